"""A fused forward for PEFT's LoRA linear layer: still PEFT's LoRA (same class tree, parameters, names, state dict,
save / load and merge), fewer passes over the activations (docs/methods.md, "LoRA"; benchmarks/NOTES.md).

LoRA: h = W x + s·B A drop(x), s = α / r (Hu et al. 2021). PEFT's ``lora.Linear.forward`` computes, per call and per
active adapter: ``x = x.to(A.dtype)`` (a full copy of the activation when the adapter is fp32 over a bf16 model,
PEFT's default ``autocast_adapter_dtype=True``), ``B(A(drop(x)))`` in that dtype, ``* s`` (a full-size pass over the
output), ``result + …`` (another, promoted to fp32 in that case) and ``.to(result.dtype)`` (a third). Here the two
r-sized factors are cast to the activation's dtype instead (their fp32 masters keep their fp32 gradients) and the
update is one GEMM epilogue into W x:

    y = W x;   y ← y + (drop(x) Aᵀ)(s·B)ᵀ      (``torch.Tensor.addmm_(h, (s·B)ᵀ)`` on the 2-D view of y)

so nothing of the size of x or y is written beyond W x itself. Further terms of the same form (LoRA-Dash's
U_S diag(δ) V_Sᵀ drop'(x)) join that GEMM as extra columns of h and w: one output GEMM of rank r + s, which reads
dL/dy once per backward GEMM instead of once per term. Under ``torch.compile`` the update is added out of place (PEFT's
form), which inductor fuses into the next kernel. With dropout in training,
drop(x) Aᵀ is :class:`DropoutMatmul`: it keeps for backward x (the tensor W x and the sibling modules already read,
so q, k, v share it) and the dropout mask packed 8 elements to a byte, and recomputes drop(x) = x·m/(1−p) there,
instead of keeping a dropped copy of x and a bool mask per adapted module (PEFT's path): 1/8 byte per input element
in place of 3 in bf16. The mask is drawn with the adapter's p, once per adapter in PEFT's order. In eager mode the draw
is ``torch.native_dropout``'s, PEFT's ``nn.Dropout`` draw, so with the same seed the masks are PEFT's (in equal dtypes).
Compiled on CUDA it is :mod:`spectune.methods.dropout_bits`: the same Bernoulli(1 − p) per element, four per Philox
call, written packed (inductor's lowering of ``native_dropout`` spends a Philox call per element). No graph breaks
under ``torch.compile`` (``torch._dynamo.explain`` in the tests).

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

from spectune.methods import dropout_bits


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


def unpack_mask_forward(packed: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """:func:`unpack_mask` by other operators (each bit tested against its power of two, ``!= 0``), for
    :class:`DropoutMatmul`'s forward. With the same operators in forward and backward, AOTAutograd's CSE merges the
    two unpackings, and inductor's min-cut partitioner then keeps an unpacked mask or drop(x) for backward (1–2 bytes
    an element per module) instead of the packed bits (+2.7 GiB at the H200 benchmark's shapes: benchmarks/NOTES.md,
    "Change 6"; ``test_lora_fused.py`` counts what the compiled step saves)."""
    powers = torch.bitwise_left_shift(torch.ones(8, dtype=torch.uint8, device=packed.device),
                                      torch.arange(8, dtype=torch.uint8, device=packed.device))
    keep = torch.bitwise_and(packed.unsqueeze(-1), powers) != 0
    return keep.view(-1)[:math.prod(shape)].view(shape)


def apply_mask(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """x·m/(1−p), rounded as ``torch.native_dropout`` rounds its output on x's device (bitwise on CPU; on CUDA up
    to the float rounding of 1/(1−p)), forward and backward alike."""
    scale = 1.0 / (1.0 - p)
    if x.device.type == "cpu":  # CPU: x · (m·s) with m·s in x's dtype
        return x * (keep.to(x.dtype) * scale)
    return x * keep * scale  # CUDA (and inductor's decomposition): (x·m)·s in the op-math dtype, one rounding


def select_kept(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x·m as a select, ``where(m, x, 0)``, with no arithmetic on x's size: the compiled CUDA path of
    :class:`DropoutMatmul` scales by 1/(1−p) on the tokens × r side instead. It is also the one form of the mask that
    inductor fuses into a Triton GEMM template's loads under ``max-autotune`` (a prologue with a bf16 multiply would
    need an fp32 upcast, which inductor declines); measured, that gained nothing (benchmarks/NOTES.md, "Change 7")."""
    return torch.where(keep, x, 0)


def packed_draw(x: torch.Tensor) -> bool:
    """Whether :class:`DropoutMatmul` draws x's mask packed with :func:`spectune.methods.dropout_bits.keep_bits`
    (CUDA under torch.compile, where inductor's own dropout spends a Philox call per element) rather than with
    ``torch.native_dropout`` (PEFT's draw: eager mode on every device, where CUDA's kernel already uses all four words
    of each call and one more launch per module would cost more than it saves: ``benchmarks/dropout_bits.py``)."""
    return x.is_cuda and torch.compiler.is_compiling()


class DropoutMatmul(torch.autograd.Function):
    """h = drop(x) aᵀ for a 2-D x (tokens × d_in) and a (r × d_in), drop = dropout with probability p in training.

    Saves x, not drop(x), and the mask bit-packed (:func:`pack_mask`, 1/8 byte per element); backward recomputes
    drop(x) from them with the forward's own expression (:func:`apply_mask`), so with g = dL/dh the gradients are
    exactly those of the forward's mask: da = gᵀ drop(x), dx = (g a)·m/(1−p). x is the tensor the base layer and
    the sibling adapted modules (q, k, v) already hold, so it costs nothing more (x is kept only when a needs a
    gradient, a only when x does, as ``torch.mm`` would). The mask is ``torch.native_dropout``'s, the draw
    ``nn.Dropout`` makes in eager mode (its dropped output is not used; in eager mode it is one more pass), except
    compiled on CUDA (:func:`packed_draw`), where :func:`spectune.methods.dropout_bits.keep_bits` draws it packed
    (same distribution, a quarter of the Philox calls). Forward and backward apply it with the same function:
    :func:`apply_mask` before the GEMM in eager mode (PEFT's rounding); compiled on CUDA, :func:`select_kept` before
    it and 1/(1−p) on the tokens × r side, h = (x·m) aᵀ/(1−p) (the same product up to bf16 rounding)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a: torch.Tensor, p: float) -> torch.Tensor:
        needs_x, needs_a = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.p = p
        ctx.x_shape = x.shape
        ctx.select = packed_draw(x)
        if ctx.select:  # four draws per Philox call, written packed (spectune.methods.dropout_bits)
            packed = dropout_bits.keep_bits(x.numel(), p, x.device)
            keep = unpack_mask_forward(packed, x.shape)  # not unpack_mask: see its docstring
            ctx.save_for_backward(x if needs_a else None, packed, a if needs_x else None)
            return torch.mm(select_kept(x, keep), a.t()) * (1.0 / (1.0 - p))
        _, keep = torch.native_dropout(x, p, True)  # PEFT's own draw
        ctx.save_for_backward(x if needs_a else None, pack_mask(keep), a if needs_x else None)
        return torch.mm(apply_mask(x, keep, p), a.t())

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, packed, a = ctx.saved_tensors
        keep = unpack_mask(packed, ctx.x_shape)
        grad_x = grad_a = None
        if ctx.select:  # h = (x·m) aᵀ / (1 − p): g/(1 − p) is tokens × r
            g = grad_h * (1.0 / (1.0 - ctx.p))
            if ctx.needs_input_grad[0]:
                grad_x = select_kept(torch.mm(g, a), keep)
            if ctx.needs_input_grad[1]:
                grad_a = torch.mm(g.t(), select_kept(x, keep))
            return grad_x, grad_a, None
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


def draws_mask(dropout: nn.Module) -> bool:
    """Whether :func:`dropout_mm` with this ``lora_dropout`` module draws a mask (or calls the module): False for
    PEFT's ``nn.Identity`` and an ``nn.Dropout`` in eval mode or with p = 0, whose product is a plain GEMM of x."""
    if isinstance(dropout, nn.Identity):
        return False
    return not (isinstance(dropout, nn.Dropout) and (not dropout.training or dropout.p == 0.0))


def cat(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` without the copy for a single tensor."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


class FusedLoraLinear(LoraLinear):
    """PEFT ``lora.Linear`` whose update is one rank-k GEMM over every term (module docstring):

        y = W x + [w_1 … w_n] [drop_1(x) a_1ᵀ … drop_n(x) a_nᵀ]ᵀ      (LoRA: a = A, w = s·B per active adapter)

    with the terms' inputs in one GEMM x [a_1; …; a_n]ᵀ when none draws a dropout mask. Eager: ``addmm_`` into
    W x (no output-sized temporary). Under ``torch.compile``: ``W x + h wᵀ`` out of place, PEFT's form, so that
    inductor fuses the add into the next kernel instead of calling a GEMM with a β = 1 epilogue (benchmarks/NOTES.md,
    Change 5)."""

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

    def update_terms(self, dt: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor, nn.Module]]:
        """(a, w, dropout) per term of the update Σ w (dropout(x) aᵀ)ᵀ, factors in the activation's dtype ``dt``
        (fp32 masters keep fp32 gradients): LoRA's (A, s·B, lora_dropout) of every active adapter; subclasses
        append theirs (LoRA-Dash: V_Sᵀ, U_S diag(δ)). Masks are drawn in this order."""
        terms = []
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            b = self.lora_B[adapter].weight * self.scaling[adapter]  # s·B in B's dtype, rounded once to dt
            terms.append((self.lora_A[adapter].weight.to(dt), b.to(dt), self.lora_dropout[adapter]))
        return terms

    def plain_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """PEFT's own forward (the reference the fused path is tested against)."""
        return LoraLinear.forward(self, x, *args, **kwargs)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self.fusable(args, kwargs):
            return self.plain_forward(x, *args, **kwargs)
        result = self.base_layer(x)
        terms = self.update_terms(result.dtype)
        if not terms:
            return result
        x2d = (x if x.dtype == result.dtype else x.to(result.dtype)).reshape(-1, x.shape[-1])
        if any(draws_mask(d) for _, _, d in terms):
            h = cat([dropout_mm(x2d, a, d) for a, _, d in terms], 1)  # tokens × k, one mask per term
        else:
            h = torch.mm(x2d, cat([a for a, _, _ in terms], 0).t())
        w = cat([w for _, w, _ in terms], 1)  # d_out × k
        if torch.compiler.is_compiling():
            return result + torch.mm(h, w.t()).view(result.shape)
        if not result.is_contiguous():
            result = result.contiguous()
        result.view(-1, result.shape[-1]).addmm_(h, w.t())
        return result

    def __repr__(self) -> str:
        return "fused_" + super().__repr__()


def register_fused(config: Any, layer_cls: type[nn.Module] = FusedLoraLinear) -> Any:
    """Have ``get_peft_model(model, config)`` build ``layer_cls`` for every targeted ``nn.Linear``; returns config."""
    config._register_custom_module({nn.Linear: layer_cls})
    return config
