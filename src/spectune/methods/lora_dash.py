"""LoRA-Dash (Si et al. 2024; ICLR 2025) built on PEFT's LoRA, without forking it (methods.md, "LoRA-Dash").

Two phases per adapted matrix W = U Σ Vᵀ (reduced SVD, fp32, σ descending):

- Pre-launch: plain PEFT LoRA, h = W x + s·B A drop(x), for ``t`` optimizer steps (``count: optimizer_steps``,
  the default) or ``t`` forward calls of that layer (``count: forward_calls``, the official code's counter).
- Switch, once per matrix: Δσ_i = u_iᵀ (sBA) v_i for every i, rate_i = |Δσ_i| / σ_i, S = the top-``s`` rates
  (``select: rate``; ``random`` / ``top_sigma`` / ``bottom_sigma`` are the paper's ablations); U_S = U[:, S] and
  V_S = V[:, S] are frozen from then on and never recomputed.
- Dash phase: h = W x + s·B A drop(x) + U_S diag(δ) V_Sᵀ drop(x), δ ∈ R^s trainable, zero-initialised, not
  scaled by s; A and B keep training. Merge: W' = W + sBA + U_S diag(δ) V_Sᵀ.

How it sits on PEFT. ``attach`` calls ``get_peft_model`` and then registers on every PEFT ``lora.Linear``, keyed by
adapter name like PEFT's own containers: ``lora_dash_delta`` (ParameterDict, δ, trainable from step 0 so the optimizer
and DeepSpeed see it), ``lora_dash_U`` (d_out×s), ``lora_dash_V`` (d_in×s), ``lora_dash_index`` (S, -1 before the
switch), ``lora_dash_switched`` and ``lora_dash_calls`` (BufferDicts, persistent). PEFT saves everything registered
on a tuner layer, so ``save_pretrained`` / ``trainer.save_model`` write them into ``adapter_model.safetensors`` and a
Trainer resume (``PeftModel.load_adapter``) restores them. The dash term is added by a forward hook on the PEFT
layer, using PEFT's dropout module of that adapter (a second, independent draw, as in the official code); before the
switch the hook returns the layer's output untouched, so the model is exactly plain LoRA (and δ gets no gradient).
With ``fused: true`` (default) the layers are ``FusedDashLinear`` (``lora_dash_layer``): PEFT's ``lora.Linear`` whose
forward adds s·BA drop(x) and U_S diag(δ) V_Sᵀ drop'(x) as one GEMM of rank r + s into W x, no hook.
A fresh ``PeftModel.from_pretrained`` silently ignores the dash tensors: load with
``LoRADash.load_adapter(base_model, folder)``.
"""

from __future__ import annotations

import copy
import json
import logging
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spectune.errors import ConfigError
from spectune.methods.lora import LoRA, LoraSpec, lora_factors
from spectune.methods.lora_dash_layer import (
    CALLS,
    DASH_NAMES,
    DELTA,
    INDEX,
    SWITCHED,
    U_S,
    V_S,
    FusedDashLinear,
    base_name,
    dash_forward_hook,
    dash_layers,
    distributed,
    gathered,
    model_identity,
    oriented_weight,
    refresh_mirrors,
)
from spectune.methods.lora_dash_schedule import DashSwitchCallback, ForwardCallCounter
from spectune.methods.registry import register
from spectune.methods.targets import check_rank, resolve_targets
from spectune.spectral import SVD, SVDCache, change_rates_lowrank, svd, top_directions

log = logging.getLogger(__name__)

SELECT_MODES = ("rate", "random", "top_sigma", "bottom_sigma")
COUNT_MODES = ("optimizer_steps", "forward_calls")

STATE_FILE = "dash_state.safetensors"
CONFIG_FILE = "dash_config.json"


@dataclass
class LoraDashSpec(LoraSpec):
    """LoRA's hyper-parameters plus the dash ones.

    ``s``: number of directions; ``t``: length of the pre-launch phase, counted per ``count``
    ("optimizer_steps" | "forward_calls"); ``select``: how S is chosen ("rate" | "random" | "top_sigma" |
    "bottom_sigma"); ``seed``: seeds ``select: random`` (mixed with each layer's name); ``svd_cache``: read/write W's
    SVD in the disk cache (``spectune.spectral.SVDCache``) instead of computing it in memory only; ``rate_tol``:
    directions with σ_i <= rate_tol have no rate and are never chosen by ``select: rate`` (None: the toolkit's
    max(d_out, d_in)·eps·σ_1 of the fp32 SVD, see ``spectune.spectral.rates``; 0.0: every σ_i > 0 ranks, as in
    the official code, where near-null directions of a rank-deficient W win by dividing by a tiny σ_i).
    """

    s: int = 8
    t: int = 100
    count: str = "optimizer_steps"
    select: str = "rate"
    seed: int = 0
    svd_cache: bool = True
    rate_tol: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.s, bool) or not isinstance(self.s, int) or self.s < 1:
            raise ValueError(f"method.s={self.s!r} must be a positive integer (the number of dash directions).")
        if isinstance(self.t, bool) or not isinstance(self.t, int) or self.t < 0:
            raise ValueError(f"method.t={self.t!r} must be an integer >= 0 (length of the pre-launch phase).")
        if self.select not in SELECT_MODES:
            raise ValueError(f"method.select='{self.select}' is not known; set method.select to one of "
                             f"{list(SELECT_MODES)}.")
        if self.count not in COUNT_MODES:
            raise ValueError(f"method.count='{self.count}' is not known; set method.count to one of "
                             f"{list(COUNT_MODES)}.")
        if self.rate_tol is not None and not self.rate_tol >= 0:
            raise ValueError(f"method.rate_tol={self.rate_tol!r} must be >= 0, or null for the default tolerance.")
        if self.select == "rate" and self.t == 0:
            raise ValueError("method.t=0 with method.select=rate ranks directions by the change of sBA = 0 (B is "
                             "zero-initialised): set method.t >= 1, or choose method.select=random|top_sigma|"
                             "bottom_sigma.")


def check_directions(layers: list[nn.Linear], s: int) -> None:
    """Raise unless 1 <= s <= min(d_out, d_in) of every target layer."""
    smallest = min(min(m.in_features, m.out_features) for m in layers)
    if not 1 <= s <= smallest:
        raise ValueError(f"method.s={s} must be between 1 and the smallest target layer's min(d_out, d_in) = "
                         f"{smallest}; choose method.s <= {smallest} or drop that layer from the target modules.")


def check_rates_informative(rates: torch.Tensor, layer: str, spec: LoraDashSpec) -> None:
    """Refuse a ``select: rate`` switch whose change rates δ_i = |u_iᵀ(sBA)v_i| / σ_i are all 0 (ΔW = sBA = 0).

    Ranking all-zero rates would not fail: ``top_directions`` breaks ties towards the larger σ, so S would silently
    be the top-σ directions, not LoRA-Dash's task-specific ones. The usual cause is a learning-rate warm-up: its
    first optimizer step(s) run at lr 0, so B is still zero-initialised at a small t (docs/methods.md, "LoRA-Dash").
    """
    defined = rates[~torch.isnan(rates)]
    if defined.numel() and not bool(defined.any()):
        raise RuntimeError(
            f"LoRA-Dash switch of {layer}: every predicted change rate |u_iᵀ(sBA)v_i|/σ_i is 0, i.e. ΔW = sBA = 0 "
            f"after t={spec.t} ({spec.count}); B is still as initialised (zero), and ranking zeros would pick the "
            "top-σ directions instead of the task-specific ones. Usual cause: a learning-rate warm-up "
            "(train.warmup_steps / train.warmup_ratio) makes the first optimizer step(s) run at lr 0, so the "
            "adapter has not moved yet (or the layer gets no gradient). Fix: raise method.t past the lr-0 steps, or "
            "drop the warm-up (train.warmup_steps=0 train.warmup_ratio=0).")


@register("lora_dash", spec=LoraDashSpec, display="LoRA-Dash",
          description="LoRA-Dash (LoRA + s task-specific directions)")
class LoRADash(LoRA):
    """LoRA-Dash over PEFT LoRA. Life cycle: ``attach`` → ``callbacks()`` (switch) → ``save_adapter`` → ``merged``.

    ``switch(model)`` is the one-time selection (called by ``DashSwitchCallback`` at step ``t``, or per layer by the
    forward-call counter); ``records`` maps each switched layer (plain-model name) to its chosen indices, σ's and
    rates; ``load_adapter(base_model, folder)`` restores a saved adapter with its dash term.
    """

    def __init__(self, spec: LoraDashSpec, svd_cache: SVDCache | None = None):
        if not isinstance(spec, LoraDashSpec):
            raise TypeError(f"LoRADash needs a LoraDashSpec; got {type(spec).__name__}.")
        super().__init__(spec)
        self.spec: LoraDashSpec = spec
        self._svd_cache = svd_cache
        self.records: dict[str, dict[str, Any]] = {}
        self.counter = None  # ForwardCallCounter for count=forward_calls

    # ----------------------------------------------------------------------------------------------- attach
    def fused_layer(self) -> type[nn.Module]:
        """PEFT ``lora.Linear`` with the fused LoRA and dash terms (``spec.fused``; the hook path otherwise)."""
        return FusedDashLinear

    def attach(self, model: nn.Module, task_type: str | None) -> nn.Module:
        layers = resolve_targets(model, self.spec.target_modules)
        check_rank(layers, self.spec.r)
        check_directions(layers, self.spec.s)
        peft_model = super().attach(model, task_type)
        self.install(peft_model, trainable=True)
        if self.spec.count == "forward_calls":
            self.install_counter(peft_model)
        return peft_model

    def check_schedule(self, total_steps: int, epochs: float | None = None) -> None:
        """The switch must come before the last optimizer step, or the run is plain LoRA under LoRA-Dash's name."""
        if self.spec.count == "optimizer_steps" and self.spec.t >= total_steps:
            raise ConfigError(
                f"method.t={self.spec.t} >= the run's {total_steps} optimizer steps: the dash switch would never "
                "happen (or only after the last step) and the run would be plain LoRA under the LoRA-Dash label. "
                f"Set method.t < {total_steps} or train longer (train.epochs / train.max_steps).")

    def install(self, model: nn.Module, trainable: bool = True, s: int | None = None) -> None:
        """Register δ (zeros), U_S, V_S (zeros), the switched flag and the call counter on every PEFT LoRA layer."""
        from peft.tuners._buffer_dict import BufferDict
        from peft.tuners.lora.layer import Linear as LoraLinear

        s = self.spec.s if s is None else s
        found = 0
        for name, layer in model.named_modules():
            if not isinstance(getattr(layer, "lora_A", None), nn.ModuleDict):
                continue
            if not isinstance(layer, LoraLinear):
                raise ValueError(f"LoRA-Dash supports linear layers only; {name} is a {type(layer).__name__}. "
                                 "Remove it from method.target_modules.")
            if hasattr(layer, DELTA):
                raise RuntimeError(f"{name} already carries a LoRA-Dash term (install called twice).")
            d_out, d_in = layer.out_features, layer.in_features  # PEFT's; W itself may be partitioned (ZeRO-3)
            if not 1 <= s <= min(d_out, d_in):
                raise ValueError(f"method.s={s} exceeds min(d_out, d_in) = {min(d_out, d_in)} of {name}.")
            deltas, us, vs, index, flags, calls = {}, {}, {}, {}, {}, {}
            for adapter, lora_a in layer.lora_A.items():
                ref = lora_a.weight
                deltas[adapter] = nn.Parameter(torch.zeros(s, dtype=ref.dtype, device=ref.device),
                                               requires_grad=trainable)
                us[adapter] = torch.zeros(d_out, s, dtype=ref.dtype, device=ref.device)
                vs[adapter] = torch.zeros(d_in, s, dtype=ref.dtype, device=ref.device)
                index[adapter] = torch.full((s,), -1, dtype=torch.int64, device=ref.device)
                flags[adapter] = torch.zeros((), dtype=torch.int64, device=ref.device)
                calls[adapter] = torch.zeros((), dtype=torch.int64, device=ref.device)
            setattr(layer, DELTA, nn.ParameterDict(deltas))
            setattr(layer, U_S, BufferDict(us, persistent=True))
            setattr(layer, V_S, BufferDict(vs, persistent=True))
            setattr(layer, INDEX, BufferDict(index, persistent=True))
            setattr(layer, SWITCHED, BufferDict(flags, persistent=True))
            setattr(layer, CALLS, BufferDict(calls, persistent=True))
            refresh_mirrors(layer)
            if not isinstance(layer, FusedDashLinear):  # a fused layer adds the term in its own forward
                layer.register_forward_hook(dash_forward_hook, with_kwargs=True)
            layer.register_load_state_dict_post_hook(refresh_mirrors)
            found += 1
        if not found:
            raise ValueError("No PEFT LoRA layers found to carry the dash term; attach LoRA first.")

    def install_counter(self, model: nn.Module) -> None:
        """Install the per-layer forward-call counter (count=forward_calls); idempotent."""
        if self.counter is None:
            self.counter = ForwardCallCounter(self)
        self.counter.install(model)

    def callbacks(self, log_event: Any = None) -> list[Any]:
        def on_switch(records: dict[str, Any], step: int) -> None:
            if log_event is not None:
                log_event("dash_switch", step=step, layers=len(records),
                          selected={k: v.get("indices") if isinstance(v, dict) else v for k, v in records.items()})

        return [DashSwitchCallback(self, on_switch)]

    # ----------------------------------------------------------------------------------------------- switch
    def _svd(self, name: str, weight: torch.Tensor, model_id: str) -> SVD:
        if not self.spec.svd_cache:
            return svd(weight)
        if self._svd_cache is None:
            self._svd_cache = SVDCache()
        return self._svd_cache.get(model_id, f"{base_name(name)}.weight", weight)

    def select(self, name: str, weight: torch.Tensor, B: torch.Tensor, A: torch.Tensor, scale: float,
               factors: SVD) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices S (int64, on CPU) for this layer per ``spec.select``, and every direction's rate (float64)."""
        s, k = self.spec.s, int(factors.S.numel())
        rates = change_rates_lowrank(weight, B, A, scale, svd=factors, tol=self.spec.rate_tol).cpu()
        mode = self.spec.select
        if mode == "rate":
            check_rates_informative(rates, base_name(name), self.spec)
            idx = top_directions(rates, s)
        elif mode == "top_sigma":
            idx = torch.arange(s)
        elif mode == "bottom_sigma":
            idx = torch.arange(k - s, k)
        else:  # random: a per-layer stream from (seed, layer name), the same on every rank
            g = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + zlib.crc32(base_name(name).encode()))
            idx = torch.randperm(k, generator=g)[:s].sort().values
        return idx.to(torch.long), rates

    @torch.no_grad()
    def switch_layer(self, name: str, layer: nn.Module, model_id: str = "model") -> dict[str, Any] | None:
        """Select S for every adapter of ``layer`` that has not switched yet and freeze U_S, V_S; never recomputes.

        Returns this layer's record (indices, σ_S, rates_S) or None when it had switched already.
        """
        todo = [a for a in getattr(layer, DELTA) if a not in layer._lora_dash_on]
        if not todo:
            return None
        record: dict[str, Any] = {}
        for adapter in todo:
            A, B = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
            with gathered([layer.get_base_layer().weight, A, B]):
                weight = oriented_weight(layer).detach()
                factors = self._svd(name, weight, model_id)
                idx, rates = self.select(name, weight, B, A, float(layer.scaling[adapter]), factors)
                u_buf, v_buf = getattr(layer, U_S)[adapter], getattr(layer, V_S)[adapter]
                dev = factors.U.device
                u_buf.copy_(factors.U[:, idx.to(dev)].to(u_buf.dtype))
                v_buf.copy_(factors.Vh[idx.to(dev), :].mT.to(v_buf.dtype))
                sigma = factors.S[idx.to(dev)].cpu()
            i_buf = getattr(layer, INDEX)[adapter]
            i_buf.copy_(idx.to(i_buf.device))
            if distributed():  # one choice for all ranks, whatever their LAPACK did (collective: all ranks switch)
                for buf in (u_buf, v_buf, i_buf):
                    torch.distributed.broadcast(buf, src=0)
            getattr(layer, SWITCHED)[adapter].fill_(1)
            layer._lora_dash_on = layer._lora_dash_on | {adapter}
            record[adapter] = {
                "indices": idx.tolist(), "sigma": sigma.tolist(),
                "rate": rates[idx].tolist(), "select": self.spec.select,
                "calls": layer._lora_dash_ncalls.get(adapter, 0),
            }
        rec = record["default"] if list(record) == ["default"] else record
        self.records[base_name(name)] = rec
        return rec

    def switch(self, model: nn.Module) -> dict[str, dict[str, Any]]:
        """Switch every layer not switched yet; return {plain-model layer name: record} for those switched now."""
        model_id = model_identity(model)
        out = {}
        for name, layer in dash_layers(model):
            rec = self.switch_layer(name, layer, model_id)
            if rec is not None:
                out[base_name(name)] = rec
        return out

    # ----------------------------------------------------------------------------------------------- save / load
    def dash_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """{f"{layer}.{lora_dash_*}": tensor}, keyed like PEFT's saved adapter (adapter "default" only)."""
        out = {}
        for name, layer in dash_layers(model):
            delta = getattr(layer, DELTA)["default"]
            with gathered([delta]):
                out[f"{name}.{DELTA}"] = delta.detach().clone()
            for key in (U_S, V_S, INDEX, SWITCHED, CALLS):
                out[f"{name}.{key}"] = getattr(layer, key)["default"].detach().clone()
        return {k: v.cpu().contiguous() for k, v in out.items()}

    @staticmethod
    def selected(model: nn.Module) -> dict[str, list[int]]:
        """{plain-model layer name: S} of every switched layer, read from the saved buffers (survives resume)."""
        return {base_name(n): getattr(layer, INDEX)["default"].tolist() for n, layer in dash_layers(model)
                if "default" in layer._lora_dash_on}

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        """The directions each layer chose at its switch (S per layer) and the switch records."""
        return {"selected": self.selected(model), "records": self.records}

    def dash_config(self, model: nn.Module) -> dict[str, Any]:
        keys = ("s", "t", "count", "select", "seed", "rate_tol", "r", "alpha", "dropout")
        return {"method": self.name, **{k: v for k, v in asdict(self.spec).items() if k in keys},
                "selected": self.selected(model), "records": self.records}

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """PEFT's files (which carry the dash tensors too) plus ``dash_state.safetensors`` and ``dash_config.json``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        model.save_pretrained(str(folder))
        save_file(self.dash_state(model), str(folder / STATE_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(self.dash_config(model), indent=2, default=str) + "\n")

    def load_adapter(self, base_model: nn.Module, folder: str | Path, is_trainable: bool = False) -> nn.Module:
        """``PeftModel.from_pretrained`` then the dash term restored (from ``dash_state.safetensors`` when present,
        else from the dash tensors in PEFT's ``adapter_model.safetensors``)."""
        from peft import PeftModel
        from peft.utils import load_peft_weights

        folder = Path(folder)
        model = PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable)
        if (folder / STATE_FILE).exists():
            from safetensors.torch import load_file

            state = load_file(str(folder / STATE_FILE))
        else:
            state = {k: v for k, v in load_peft_weights(str(folder)).items() if ".lora_dash_" in k}
        names = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and isinstance(m.lora_A, nn.ModuleDict)]
        missing = [n for n in names if f"{n}.{DELTA}" not in state]
        if missing:
            raise ValueError(f"{folder} holds no LoRA-Dash state for {missing[:3]}{'…' if len(missing) > 3 else ''}; "
                             "it was not saved from a LoRADash model (load it with PeftModel.from_pretrained).")
        s = int(state[f"{names[0]}.{DELTA}"].numel())
        self.install(model, trainable=is_trainable, s=s)
        modules = dict(model.named_modules())
        with torch.no_grad():
            for name in names:
                layer = modules[name]
                for key in DASH_NAMES:
                    if f"{name}.{key}" in state:
                        target = getattr(layer, key)["default"]
                        target.copy_(state[f"{name}.{key}"].to(device=target.device, dtype=target.dtype))
                refresh_mirrors(layer)
        return model

    def update_factors(self, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """ΔW = s·B A + U_S diag(δ) V_Sᵀ = [s·B | U_S diag(δ)] [A; V_Sᵀ] per layer (the dash part once switched)."""
        out = {}
        for name, layer in dash_layers(model):
            b, a = lora_factors(layer)
            if "default" in layer._lora_dash_on:
                delta = getattr(layer, DELTA)["default"]
                with gathered([delta]):
                    d = delta.detach().float().cpu()
                u = getattr(layer, U_S)["default"].detach().float().cpu()
                v = getattr(layer, V_S)["default"].detach().float().cpu()
                if getattr(layer, "fan_in_fan_out", False):
                    u, v = v, u
                b, a = torch.cat([b, u * d], 1), torch.cat([a, v.mT], 0)
            out[base_name(name)] = (b, a)
        return out

    # ----------------------------------------------------------------------------------------------- merge
    @torch.no_grad()
    def merged(self, model: nn.Module) -> nn.Module:
        """A merged copy, W + sBA + U_S diag(δ) V_Sᵀ in plain weights; the trained PEFT model is left as it was."""
        out = copy.deepcopy(model)
        for _, layer in dash_layers(out):
            for adapter in layer._lora_dash_on & set(layer.active_adapters):
                delta = getattr(layer, DELTA)[adapter]
                dash = (getattr(layer, U_S)[adapter].float() * delta.float()) @ getattr(layer, V_S)[adapter].float().mT
                w = layer.get_base_layer().weight
                if getattr(layer, "fan_in_fan_out", False):
                    dash = dash.mT
                w.copy_((w.float() + dash.to(w.device)).to(w.dtype))
        return out.merge_and_unload()

