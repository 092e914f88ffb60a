"""Rank of the accumulated update W_now − W_0 during training (PeriodicLoRA's central claim, Meng et al. 2024).

Every ``analysis.rank_every`` optimizer steps and at the end of training, for each tracked matrix:
``spectune.spectral.rank_stats`` of ΔW = W_now − W_0 (numerical rank, stable rank ‖ΔW‖_F²/‖ΔW‖_2², effective rank,
‖ΔW‖_F, spectrum). The method says how its update is read (``Method.update_form``), never forming what need not be
formed:

- ``lowrank``: ``Method.update_factors`` gives (B, A) with B A = ΔW (LoRA: s·B, A; PeriodicLoRA: every merged
  stage and the live adapter; LoRA-Dash: the LoRA factors and U_S diag(δ), V_S), measured by ``rank_stats_lowrank``;
- ``dense``: ΔW = W − W_0 against a CPU fp32 snapshot of the tracked matrices taken at the start.

Tracked matrices: the adapted ones, or for a dense update the Linear layers whose names end with one of
``target_modules`` (the model's default adapter targets, so every method is compared on the same matrices).
Logged as ``update_rank`` events (per matrix and means); the last one is also written to ``update_rank.json``.
Runs on every rank (gathering ZeRO-3 parameters is collective); only rank 0 writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from spectune.io import write_json_atomic
from spectune.methods.optim_state import editable
from spectune.methods.targets import matches
from spectune.spectral import rank_stats, rank_stats_lowrank

KEEP_SIGMAS = 64  # singular values kept per matrix in the logs (the spectrum's head; ranks use all of them)


def _target_linears(model: nn.Module, target_modules: list[str] | str) -> list[tuple[str, nn.Linear]]:
    """The Linear layers PEFT's rule selects (a list of name suffixes, or a regex string)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and matches(n, target_modules)]


def summarize(per_matrix: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Means of the rank measures over matrices and the total ‖ΔW‖_F = sqrt(Σ ‖ΔW_ℓ‖_F²)."""
    n = max(len(per_matrix), 1)
    return {
        "mean_numerical_rank": sum(v["numerical_rank"] for v in per_matrix.values()) / n,
        "mean_stable_rank": sum(v["stable_rank"] for v in per_matrix.values()) / n,
        "mean_effective_rank": sum(v["effective_rank"] for v in per_matrix.values()) / n,
        "total_frobenius_norm": math.sqrt(sum(v["frobenius_norm"] ** 2 for v in per_matrix.values())),
        "matrices": len(per_matrix),
    }


class UpdateRankTracker(TrainerCallback):
    """Logs rank_stats of W_now − W_0 per tracked matrix every ``every`` steps (see the module docstring)."""

    def __init__(self, method: Any, every: int, log_event: Callable[..., None], run_dir: Path | None = None,
                 target_modules: list[str] | None = None, is_main: bool = True):
        if every < 1:
            raise ValueError(f"analysis.rank_every={every} must be a positive number of optimizer steps (or null).")
        self.method, self.every, self.log_event = method, every, log_event
        targets = target_modules or []
        self.run_dir, self.is_main = run_dir, is_main
        self.target_modules = targets if isinstance(targets, str) else list(targets)
        self.w0: dict[str, torch.Tensor] = {}
        self.last: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.method.update_form != "dense" or model is None:
            return
        layers = _target_linears(model, self.target_modules)
        if not layers:
            raise ValueError(f"analysis.rank_every: no Linear layer of the model ends with {self.target_modules}.")
        if state.global_step > 0:
            raise ValueError(f"analysis.rank_every with method={self.method.name} (a dense update) cannot resume: "
                             "W_0 is not in the checkpoint. "
                             "Start the run afresh (or drop analysis.rank_every).")
        for name, lin in layers:
            with editable([lin.weight], modify=False):
                self.w0[name] = lin.weight.detach().float().cpu().clone()

    @torch.no_grad()
    def measure(self, model: nn.Module) -> dict[str, dict[str, Any]]:
        """{matrix: rank_stats of its accumulated update} (spectrum cut to the first 64 values)."""
        out: dict[str, dict[str, Any]] = {}
        factors = self.method.update_factors(model)
        if factors is None:  # dense update: against the snapshot
            for name, lin in _target_linears(model, self.target_modules):
                with editable([lin.weight], modify=False):
                    delta = lin.weight.detach().float().cpu() - self.w0[name]
                out[name] = rank_stats(delta)
        else:
            for name, (b, a) in factors.items():
                out[name] = rank_stats_lowrank(b, a)
        for v in out.values():
            v["singular_values"] = v["singular_values"][:KEEP_SIGMAS]
        return out

    def _record(self, model: nn.Module, step: int) -> None:
        per_matrix = self.measure(model)
        self.last = {"step": step, **summarize(per_matrix), "per_matrix": per_matrix}
        if self.is_main:
            compact = {k: {m: v[m] for m in ("numerical_rank", "stable_rank", "effective_rank", "frobenius_norm")}
                       for k, v in per_matrix.items()}
            self.log_event("update_rank", step=step, **summarize(per_matrix), per_matrix=compact)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step % self.every == 0:
            self._record(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        if self.last is None or self.last["step"] != state.global_step:
            self._record(model, state.global_step)
        if self.is_main and self.run_dir is not None:
            write_json_atomic(self.run_dir / "update_rank.json", self.last)
