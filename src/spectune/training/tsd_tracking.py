"""Track how well an adapter's update predicts the task-specific directions during training (LoRA-Dash, Si et al.).

Every ``every`` optimizer steps, for each adapted matrix: predicted rates δ̂_i = |u_iᵀ ΔW v_i| / σ_i from the method's
low-rank update ΔW = B A (``Method.update_factors``; LoRA: s·B, A — never forming ΔW), true rates
δ_i = |u_iᵀ ΔW* v_i| / σ_i from a full fine-tuning run's ΔW* = W* − W (computed once), with u_i, σ_i, v_i the SVD of
W at the start of training, and the paper's overlaps: recall (true top-4 inside predicted top-8) and accuracy
(predicted top-8 inside true top-16). The mean over matrices (and each matrix's values) go to the event stream
(metrics.jsonl, W&B) as ``tsd`` events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from spectune.methods.base import Method, base_weight, plain_modules
from spectune.spectral import SVDCache, change_rates, change_rates_lowrank, tsd_overlap


def reference_state(reference: Path) -> dict[str, torch.Tensor]:
    """W* of a full fine-tuning run (``<run>/merged``) or a model folder, by module name."""
    from safetensors.torch import load_file

    check_reference_method(reference)
    folder = reference / "merged" if (reference / "merged").is_dir() else reference
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No safetensors weights in {folder}: analysis.tsd_reference must be a finished full "
                                "fine-tuning run folder (with merged/) of the same model and task.")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return {k.removesuffix(".weight"): v for k, v in state.items() if k.endswith(".weight")}


def check_reference_method(reference: Path) -> None:
    """Refuse a reference run whose method is not full fine-tuning: ΔW* = W* − W must be the dense optimum."""
    import yaml

    from spectune.errors import ConfigError
    from spectune.methods import REGISTRY

    path = Path(reference) / "config.yaml"
    if not path.exists():
        return  # a plain model folder: taken as W*
    name = (yaml.safe_load(path.read_text()) or {}).get("method", {}).get("name")
    if name not in REGISTRY or REGISTRY[name].cls.update_form != "dense":
        raise ConfigError(f"The reference {reference} is a method={name} run; ΔW* = W* − W must come from full "
                          "fine-tuning (a dense update). Pass a finished full fine-tuning run folder of the same "
                          "model and task.")


class TSDTracker(TrainerCallback):
    """Log the overlap of the method's predicted TSD with the reference run's true TSD every ``every`` steps."""

    def __init__(self, reference: Path, every: int, log: Any, model_id: str, method: Method, k_pred: int = 8):
        if every < 1:
            raise ValueError(f"analysis.tsd_every={every} must be >= 1.")
        if method.update_form != "lowrank":
            raise ValueError(f"analysis.tsd_reference needs a low-rank update; method={method.name}'s is "
                             f"{method.update_form}.")
        self.reference, self.every, self.log, self.model_id, self.k_pred = Path(reference), every, log, model_id, k_pred
        self.method = method
        self.true: dict[str, torch.Tensor] = {}
        self.w0: dict[str, torch.Tensor] = {}
        self.svds: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, model: nn.Module | None = None, **kwargs):
        ref = reference_state(self.reference)
        cache = SVDCache()
        factors = self.method.update_factors(model)
        if not factors:
            raise ValueError(f"analysis.tsd_reference: method={self.method.name} adapted no matrix of this model.")
        modules = plain_modules(model)
        for name in factors:
            key = next((c for c in (name, name.removeprefix("model."), f"model.{name}") if c in ref), None)
            if key is None:
                raise ValueError(f"The reference run {self.reference} has no weight for {name}: same model?")
            W = base_weight(modules[name]).detach().float().cpu()
            self.w0[name] = W
            self.svds[name] = cache.get(self.model_id, f"{name}.weight", W)
            self.true[name] = change_rates(W, ref[key].float() - W, svd=self.svds[name])
        self._measure(model, state.global_step)

    def on_step_end(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if state.global_step % self.every == 0:
            self._measure(model, state.global_step)

    @torch.no_grad()
    def _measure(self, model: nn.Module, step: int) -> None:
        per_layer = {}
        for name, (B, A) in self.method.update_factors(model).items():
            pred = change_rates_lowrank(self.w0[name], B, A, 1.0, svd=self.svds[name])
            if not torch.any(pred > 0):  # ΔW = 0 (B = 0 at step 0): nothing predicted yet
                continue
            n = pred.numel()
            per_layer[name] = tsd_overlap(pred, self.true[name], k_pred=min(self.k_pred, n),
                                          k_true_recall=min(4, n), k_true_accuracy=min(16, n))
        if per_layer:
            recall = sum(v["recall"] for v in per_layer.values()) / len(per_layer)
            accuracy = sum(v["accuracy"] for v in per_layer.values()) / len(per_layer)
            self.log("tsd", step=step, recall=recall, accuracy=accuracy, layers=len(per_layer),
                     per_layer={k: [v["recall"], v["accuracy"]] for k, v in per_layer.items()})
