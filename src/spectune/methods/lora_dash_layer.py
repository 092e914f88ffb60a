"""LoRA-Dash's layer-level pieces (a leaf module, as PEFT's ``layer.py``): the names of the tensors it registers
on PEFT LoRA layers, the forward hook that adds U_S diag(δ) V_Sᵀ drop(x) to a plain PEFT layer, the fused layer
(:class:`FusedDashLinear`) that adds it in its own forward, and small accessors. Imported by
``lora_dash`` (the method) and ``lora_dash_schedule`` (its callbacks); imports neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from spectune.methods.base import PEFT_PREFIX
from spectune.methods.lora_fused import FusedLoraLinear

DELTA, U_S, V_S = "lora_dash_delta", "lora_dash_U", "lora_dash_V"
INDEX, SWITCHED, CALLS = "lora_dash_index", "lora_dash_switched", "lora_dash_calls"
DASH_NAMES = (DELTA, U_S, V_S, INDEX, SWITCHED, CALLS)


@contextmanager
def gathered(params: list[torch.Tensor]) -> Iterator[None]:
    """Gather DeepSpeed ZeRO-3 partitioned ``params`` (read-only) for the block; a no-op for ordinary tensors."""
    zero = [p for p in params if hasattr(p, "ds_id")]
    if not zero:
        yield
        return
    try:
        import deepspeed
    except ImportError as err:  # a ZeRO-3 parameter without deepspeed cannot happen, but say so if it does
        raise RuntimeError("ZeRO-3 partitioned parameters found but deepspeed cannot be imported.") from err
    with deepspeed.zero.GatheredParameters(zero, modifier_rank=None):
        yield


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def dash_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, PEFT LoRA layer) for every layer carrying a dash term, in module order."""
    return [(n, m) for n, m in model.named_modules() if hasattr(m, DELTA) and isinstance(getattr(m, DELTA),
                                                                                      nn.ParameterDict)]


def base_name(name: str) -> str:
    """The module name in the plain model (PEFT's ``base_model.model.`` prefix removed)."""
    return name.removeprefix(PEFT_PREFIX)


def oriented_weight(layer: nn.Module) -> torch.Tensor:
    """The frozen W of a PEFT LoRA layer as (d_out, d_in) (GPT-2 style Conv1D stores it transposed)."""
    w = layer.get_base_layer().weight
    return w.mT if getattr(layer, "fan_in_fan_out", False) else w


def refresh_mirrors(module: nn.Module, *_: Any) -> None:
    """Keep the Python-side copies of the flag and counter in step with the buffers (read only after a load)."""
    module._lora_dash_on = {a for a, f in getattr(module, SWITCHED).items() if bool(f)}
    module._lora_dash_ncalls = {a: int(c) for a, c in getattr(module, CALLS).items()}


def add_dash(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``output`` + U_S diag(δ) V_Sᵀ drop(x) of every active, switched adapter (out of place; PEFT's forward path)."""
    for adapter in module.active_adapters:
        if adapter not in module._lora_dash_on:
            continue
        delta = getattr(module, DELTA)[adapter]
        # In the activation's dtype: casting x (batch × seq × d_in) to δ's fp32 first costs a full copy per layer;
        # the r-sized factors are cast instead (δ keeps its fp32 master and gradient).
        xd = module.lora_dropout[adapter](x)
        dt = xd.dtype
        dash = ((xd @ getattr(module, V_S)[adapter].to(dt)) * delta.to(dt)) @ getattr(module, U_S)[adapter].to(dt).mT
        output = output + dash.to(output.dtype)
    return output


def dash_forward_hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
    """Add U_S diag(δ) V_Sᵀ drop(x) to a PEFT LoRA layer's output once that adapter has switched; else nothing.

    Registered on plain PEFT ``lora.Linear`` layers; :class:`FusedDashLinear` adds the term in its own forward."""
    if isinstance(module, FusedDashLinear) or not module._lora_dash_on or module.disable_adapters:
        return None
    if kwargs.get("adapter_names") is not None:
        raise ValueError("LoRA-Dash does not support PEFT's mixed-adapter batches (adapter_names=...).")
    return add_dash(module, args[0] if args else kwargs["x"], output)


class FusedDashLinear(FusedLoraLinear):
    """:class:`~spectune.methods.lora_fused.FusedLoraLinear` plus LoRA-Dash's term as one more term of its update:

        y = W x + [s·B, U_S diag(δ)] [drop(x) Aᵀ, drop'(x) V_S]ᵀ       (one output GEMM of rank r + s)

    with drop' a second draw of the adapter's dropout after LoRA's (the order of the hook path, so the same seed
    gives the same masks), kept for backward as a packed mask beside x (``lora_fused.DropoutMatmul``); without an
    active dropout, drop(x) = drop'(x) = x and the input side is one GEMM too, x [A; V_Sᵀ]ᵀ. δ scales U_S's columns
    (s × d_out numbers) rather than the tokens × s product. Before the switch (or with adapters disabled) the term
    is absent, as in the hook path; when the fused path does not apply, PEFT's forward then :func:`add_dash` run.
    """

    def update_terms(self, dt: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor, nn.Module]]:
        terms = super().update_terms(dt)
        on = getattr(self, "_lora_dash_on", None)
        if not on:
            return terms
        for adapter in self.active_adapters:
            if adapter not in on:
                continue
            u = getattr(self, U_S)[adapter] * getattr(self, DELTA)[adapter]  # U_S diag(δ), d_out × s
            terms.append((getattr(self, V_S)[adapter].t().to(dt), u.to(dt), self.lora_dropout[adapter]))
        return terms

    def plain_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        output = super().plain_forward(x, *args, **kwargs)
        if not getattr(self, "_lora_dash_on", None) or self.disable_adapters:
            return output
        if kwargs.get("adapter_names") is not None:
            raise ValueError("LoRA-Dash does not support PEFT's mixed-adapter batches (adapter_names=...).")
        return add_dash(self, x, output)


def model_identity(model: nn.Module) -> str:
    """A name for the SVD cache's folder: the base model's ``_name_or_path``, else its class name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(base, "config", None), "_name_or_path", "") or type(base).__name__
