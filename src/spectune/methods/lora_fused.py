"""A fused forward for PEFT's LoRA linear layer: still PEFT's LoRA (same class tree, parameters, names, state dict,
save / load and merge), one less pass over the activations (docs/methods.md, "LoRA"; benchmarks/NOTES.md).

LoRA: h = W x + s·B A drop(x), s = α / r (Hu et al. 2021). PEFT's ``lora.Linear.forward`` computes, per call and per
active adapter: ``x = x.to(A.dtype)`` (a full copy of the activation when the adapter is fp32 over a bf16 model,
PEFT's default ``autocast_adapter_dtype=True``), ``B(A(drop(x)))`` in that dtype, ``* s`` (a full-size pass over the
output), ``result + …`` (another, promoted to fp32 in that case) and ``.to(result.dtype)`` (a third). Here the two
r-sized factors are cast to the activation's dtype instead (their fp32 masters keep their fp32 gradients) and the
update is one GEMM epilogue into W x:

    y = W x;   y ← y + s · (drop(x) Aᵀ) Bᵀ      (``torch.Tensor.addmm_(h, Bᵀ, alpha=s)`` on the 2-D view of y)

so nothing of the size of x or y is written beyond W x itself and the dropout's output. With dropout in training,
drop(x) Aᵀ is :class:`DropoutMatmul`: it keeps for backward x (the tensor W x and the sibling modules already read,
so q, k, v share it) and the dropout mask packed 8 elements to a byte, and recomputes drop(x) = x·m/(1−p) there,
instead of keeping a dropped copy of x and a bool mask per adapted module (PEFT's path): 1/8 byte per input element
in place of 3 in bf16. The mask is drawn by ``torch.native_dropout`` with the adapter's p, once per adapter in PEFT's
order: the same draw as PEFT's ``nn.Dropout`` in eager mode, so with the same seed the masks are PEFT's (in equal
dtypes). No graph breaks under ``torch.compile`` (``torch._dynamo.explain`` in the tests).

The fused path runs when it is exact up to rounding; otherwise PEFT's own forward runs: adapters disabled or merged,
``adapter_names=`` (mixed batches) or other keyword arguments, a LoRA variant (DoRA, …), ``fan_in_fan_out``,
``lora_bias``, or DeepSpeed ZeRO-3 partitioned factors (ZeRO-3 gathers ``lora_A``/``lora_B`` only when those modules
are called, which the fused GEMM does not do).

Installed with PEFT's custom-module mechanism (``LoraConfig._register_custom_module({nn.Linear: FusedLoraLinear})``):
``get_peft_model`` builds these instead of ``lora.Linear``; the saved ``adapter_config.json`` is unchanged and
``PeftModel.from_pretrained`` loads the adapter into plain ``lora.Linear`` layers (same outputs).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn


def pack_mask(keep: torch.Tensor) -> torch.Tensor:
    """A bool tensor as bits, 8 elements to a byte (uint8, element i of the flattened tensor is bit i % 8 of byte
    i // 8, zero-padded to a multiple of 8): ``unpack_mask(pack_mask(m), m.shape)`` is ``m``."""
    flat = keep.reshape(-1).to(torch.uint8)
    pad = -flat.numel() % 8
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    shifts = torch.arange(8, dtype=torch.uint8, device=keep.device)  # made on the device: no host copy
    return torch.bitwise_left_shift(flat.view(-1, 8), shifts).sum(-1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The bool tensor of ``shape`` that :func:`pack_mask` packed."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = torch.bitwise_and(torch.bitwise_right_shift(packed.unsqueeze(-1), shifts), 1)
    return bits.view(-1)[:math.prod(shape)].view(shape).bool()


def apply_mask(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """x·m/(1−p), rounded as ``torch.native_dropout`` rounds its output on x's device (bitwise on CPU; on CUDA up
    to the float rounding of 1/(1−p)), forward and backward alike."""
    scale = 1.0 / (1.0 - p)
    if x.device.type == "cpu":  # CPU: x · (m·s) with m·s in x's dtype
        return x * (keep.to(x.dtype) * scale)
    return x * keep * scale  # CUDA (and inductor's decomposition): (x·m)·s in the op-math dtype, one rounding


class DropoutMatmul(torch.autograd.Function):
    """h = drop(x) aᵀ for a 2-D x (tokens × d_in) and a (r × d_in), drop = dropout with probability p in training.

    Saves x, not drop(x), and the mask bit-packed (:func:`pack_mask`, 1/8 byte per element); backward recomputes
    drop(x) from them with the forward's own expression (:func:`apply_mask`), so with g = dL/dh the gradients are
    exactly those of the forward's mask: da = gᵀ drop(x), dx = (g a)·m/(1−p). x is the tensor the base layer and
    the sibling adapted modules (q, k, v) already hold, so it costs nothing more (x is kept only when a needs a
    gradient, a only when x does, as ``torch.mm`` would). The mask is ``torch.native_dropout``'s, the draw
    ``nn.Dropout`` makes in eager mode; its dropped output is not used (the same function forward and backward on
    every device and under ``torch.compile``, which removes the unused output; in eager mode it is one more pass)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a: torch.Tensor, p: float) -> torch.Tensor:
        _, keep = torch.native_dropout(x, p, True)
        xd = apply_mask(x, keep, p)
        needs_x, needs_a = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(x if needs_a else None, pack_mask(keep), a if needs_x else None)
        ctx.p = p
        ctx.x_shape = x.shape
        return torch.mm(xd, a.t())

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, packed, a = ctx.saved_tensors
        keep = unpack_mask(packed, ctx.x_shape)
        grad_x = grad_a = None
        if ctx.needs_input_grad[0]:
            grad_x = apply_mask(torch.mm(grad_h, a), keep, ctx.p)
        if ctx.needs_input_grad[1]:
            grad_a = torch.mm(grad_h.t(), apply_mask(x, keep, ctx.p))
        return grad_x, grad_a, None


def dropout_mm(x2d: torch.Tensor, a: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
    """``dropout(x2d) @ a.T`` for an adapter's ``lora_dropout`` module: :class:`DropoutMatmul` for an active
    ``nn.Dropout`` (training, 0 < p < 1); a plain ``torch.mm`` of x2d, no mask drawn, for PEFT's ``nn.Identity``
    (p = 0) or an ``nn.Dropout`` in eval mode or with p = 0; any other module is called first, as PEFT would."""
    if isinstance(dropout, nn.Dropout):
        if dropout.training and dropout.p > 0.0:
            if dropout.p < 1.0:
                return DropoutMatmul.apply(x2d, a, float(dropout.p))
            x2d = dropout(x2d)  # p = 1: zeros
    elif not isinstance(dropout, nn.Identity):
        x2d = dropout(x2d)
    return torch.mm(x2d, a.t())


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
            h = dropout_mm(xs.reshape(-1, xs.shape[-1]), a, self.lora_dropout[adapter])  # tokens × r
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
