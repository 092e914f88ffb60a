"""A fused forward for PEFT's LoRA linear layer: still PEFT's LoRA (same class tree, parameters, names, state dict,
save / load and merge), one less pass over the activations (docs/methods.md, "LoRA"; benchmarks/NOTES.md).

LoRA: h = W x + s·B A drop(x), s = α / r (Hu et al. 2021). PEFT's ``lora.Linear.forward`` computes, per call and per
active adapter: ``x = x.to(A.dtype)`` (a full copy of the activation when the adapter is fp32 over a bf16 model,
PEFT's default ``autocast_adapter_dtype=True``), ``B(A(drop(x)))`` in that dtype, ``* s`` (a full-size pass over the
output), ``result + …`` (another, promoted to fp32 in that case) and ``.to(result.dtype)`` (a third). Here the two
r-sized factors are cast to the activation's dtype instead (their fp32 masters keep their fp32 gradients) and the
update is one GEMM epilogue into W x:

    y = W x;   y ← y + s · (drop(x) Aᵀ) Bᵀ      (``torch.Tensor.addmm_(h, Bᵀ, alpha=s)`` on the 2-D view of y)

so nothing of the size of x or y is written beyond W x itself and the dropout's output. Dropout is PEFT's own
``lora_dropout[adapter]`` module, called once per adapter in PEFT's order, so with the same seed the masks are the
same as PEFT's (in equal dtypes). No graph breaks under ``torch.compile`` (``torch._dynamo.explain`` in the tests).

The fused path runs when it is exact up to rounding; otherwise PEFT's own forward runs: adapters disabled or merged,
``adapter_names=`` (mixed batches) or other keyword arguments, a LoRA variant (DoRA, …), ``fan_in_fan_out``,
``lora_bias``, or DeepSpeed ZeRO-3 partitioned factors (ZeRO-3 gathers ``lora_A``/``lora_B`` only when those modules
are called, which the fused GEMM does not do).

Installed with PEFT's custom-module mechanism (``LoraConfig._register_custom_module({nn.Linear: FusedLoraLinear})``):
``get_peft_model`` builds these instead of ``lora.Linear``; the saved ``adapter_config.json`` is unchanged and
``PeftModel.from_pretrained`` loads the adapter into plain ``lora.Linear`` layers (same outputs).
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn


class FusedLoraLinear(LoraLinear):
    """PEFT ``lora.Linear`` whose forward is W x + s·(drop(x) Aᵀ) Bᵀ as one ``addmm_`` epilogue per adapter."""

    def fusable(self, args: tuple, kwargs: dict[str, Any]) -> bool:
        """Whether the fused forward gives PEFT's result (else PEFT's own forward runs; see the module docstring)."""
        if args or kwargs or self.disable_adapters or self.merged or self.lora_variant or self.fan_in_fan_out:
            return False
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            if self.lora_bias.get(adapter, False) or hasattr(self.lora_A[adapter].weight, "ds_id") \
                    or hasattr(self.lora_B[adapter].weight, "ds_id"):
                return False
        return True

    def lora_terms(self, x: torch.Tensor, out2d: torch.Tensor) -> None:
        """Add s·(drop(x) Aᵀ) Bᵀ of every active adapter to ``out2d`` (tokens × d_out) in place, in its dtype."""
        dt = out2d.dtype
        xs = x if x.dtype == dt else x.to(dt)
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            a = self.lora_A[adapter].weight.to(dt)
            b = self.lora_B[adapter].weight.to(dt)
            xd = self.lora_dropout[adapter](xs)
            h = torch.mm(xd.reshape(-1, xd.shape[-1]), a.t())  # tokens × r
            out2d.addmm_(h, b.t(), alpha=self.scaling[adapter])

    def extra_terms(self, x: torch.Tensor, out2d: torch.Tensor) -> None:
        """Further in-place terms after LoRA's (none here; LoRA-Dash adds U_S diag(δ) V_Sᵀ drop(x))."""
        return None

    def plain_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """PEFT's own forward (the reference the fused path is tested against)."""
        return LoraLinear.forward(self, x, *args, **kwargs)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self.fusable(args, kwargs):
            return self.plain_forward(x, *args, **kwargs)
        result = self.base_layer(x)
        if not result.is_contiguous():
            result = result.contiguous()
        out2d = result.view(-1, result.shape[-1])
        self.lora_terms(x, out2d)
        self.extra_terms(x, out2d)
        return result

    def __repr__(self) -> str:
        return "fused_" + super().__repr__()


def register_fused(config: Any, layer_cls: type[nn.Module] = FusedLoraLinear) -> Any:
    """Have ``get_peft_model(model, config)`` build ``layer_cls`` for every targeted ``nn.Linear``; returns config."""
    config._register_custom_module({nn.Linear: layer_cls})
    return config
