"""LoRA through PEFT: the baseline every other method is compared with (docs/methods.md, "LoRA").

ΔW = s·B A with s = α / r, B ∈ R^{d_out×r} zero-initialised, A ∈ R^{r×d_in} (Hu et al. 2021); PEFT's
``LoraConfig`` + ``get_peft_model`` inject it and ``merge_and_unload`` folds it into W. With ``fused: true`` (the
default) PEFT builds :class:`~spectune.methods.lora_fused.FusedLoraLinear` layers (its custom-module mechanism): PEFT's
``lora.Linear`` with W x + s·(drop(x) Aᵀ) Bᵀ as one GEMM epilogue; parameters, names, state dict, save/load and merge
are PEFT's. ``fused: false`` gives PEFT's ``lora.Linear`` forward itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from spectune.methods.base import PEFT_PREFIX, Method
from spectune.methods.optim_state import editable
from spectune.methods.registry import register
from spectune.methods.targets import check_rank, resolve_targets


@dataclass
class LoraSpec:
    """LoRA hyper-parameters: rank ``r``, scale numerator ``alpha`` (s = α/r), dropout and targets; ``fused``: the
    fused forward (:mod:`spectune.methods.lora_fused`) in place of PEFT's ``lora.Linear.forward``."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "v_proj"])
    bias: str = "none"
    modules_to_save: list[str] | None = None
    fused: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"method.r={self.r!r} must be a positive integer.")
        if not self.alpha > 0:
            raise ValueError(f"method.alpha={self.alpha!r} must be > 0 (s = alpha / r scales the update; 0 would "
                             "switch the adapter off).")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"method.dropout={self.dropout!r} must be in [0, 1].")
        if not isinstance(self.fused, bool):
            raise ValueError(f"method.fused={self.fused!r} must be true or false.")
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every PEFT LoRA layer carrying the ``default`` adapter; names keep PEFT's prefix."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "lora_A", None), nn.ModuleDict) and "default" in m.lora_A]


def base_name(name: str) -> str:
    """A PEFT module name as it is in the plain model (``base_model.model.`` removed)."""
    return name.removeprefix(PEFT_PREFIX)


def lora_factors(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(s·B, A) of a PEFT LoRA layer's ``default`` adapter, fp32 on the CPU (gathered under ZeRO-3)."""
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    with editable([A, B], modify=False):
        b = B.detach().float().cpu() * float(layer.scaling["default"])
        a = A.detach().float().cpu().clone()
    if getattr(layer, "fan_in_fan_out", False):  # W is stored transposed: ΔWᵀ = Aᵀ (sB)ᵀ
        return a.mT.contiguous(), b.mT.contiguous()
    return b, a


@register("lora", spec=LoraSpec, display="LoRA", description="PEFT LoRA (baseline)")
class LoRA(Method):
    """PEFT LoRA. ``task_type``: "SEQ_CLS" (the classifier head trains, as PEFT does), "CAUSAL_LM", or None."""

    def __init__(self, spec: LoraSpec):
        self.spec = spec

    def fused_layer(self) -> type[nn.Module]:
        """The PEFT ``lora.Linear`` subclass built for ``nn.Linear`` targets when ``spec.fused`` (imported lazily:
        PEFT loads only when a model is adapted)."""
        from spectune.methods.lora_fused import FusedLoraLinear

        return FusedLoraLinear

    def peft_config(self, task_type: str | None):
        """The PEFT ``LoraConfig`` for this spec (with the fused layer registered when ``spec.fused``)."""
        from peft import LoraConfig

        from spectune.methods.lora_fused import register_fused

        config = LoraConfig(
            r=self.spec.r, lora_alpha=self.spec.alpha, lora_dropout=self.spec.dropout,
            target_modules=self.spec.target_modules, bias=self.spec.bias, task_type=task_type,
            modules_to_save=self.spec.modules_to_save,
        )
        return register_fused(config, self.fused_layer()) if self.spec.fused else config

    def attach(self, model: nn.Module, task_type: str | None) -> nn.Module:
        from peft import get_peft_model

        check_rank(resolve_targets(model, self.spec.target_modules), self.spec.r)
        return get_peft_model(model, self.peft_config(task_type))

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(str(folder))

    def merged(self, model: nn.Module) -> nn.Module:
        """A merged copy (W + sBA); the trained PEFT model is left as it was."""
        return copy.deepcopy(model).merge_and_unload()

    def update_factors(self, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """ΔW = s·B A per adapted matrix, from the live factors."""
        return {base_name(n): lora_factors(layer) for n, layer in lora_layers(model)}

    def rank(self) -> int | None:
        return self.spec.r
