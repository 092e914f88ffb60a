"""LoRA's two GEMMs on the dropped input, with the dropout mask applied as x is loaded (compiled CUDA path).

With drop(x) = x·m/(1−p) (m the keep mask, packed 8 to a byte as :mod:`spectune.methods.dropout_bits` writes it) and
A the r × d_in down-projection (Hu et al. 2021: h = W x + s·B A drop(x)):

    forward    h  = (x ⊙ m) Aᵀ / (1−p)            tokens × r
    backward   dA = gᵀ (x ⊙ m) / (1−p)            r × d_in,   g = dL/dh

Compiled by inductor, each is a pointwise pass that writes x ⊙ m (2 bytes an element in bf16) and a cuBLAS GEMM that
reads it back: four bytes an element beyond the GEMM's own read of x, over 1 G elements per step at LLaMA-3-8B's shapes
(benchmarks/NOTES.md, "Change 7"). Here one Triton kernel each reads x and the bits (2⅛ bytes an element) and
accumulates in fp32. The rank r is small, so both are memory-bound: the forward splits d_in and the backward splits the
tokens across programs, and sums the fp32 partials afterwards (deterministic, no atomics).

Both are ``torch.library.triton_op`` operators: torch.compile traces into them, inductor launches the kernels from
its generated code and fuses the partials' sum and cast into its own kernels (an opaque ``custom_op`` went through
Python at every launch: benchmarks/NOTES.md, "Change 7").

Which path :class:`spectune.methods.lora_fused.DropoutMatmul` takes compiled on CUDA is :data:`MODE` (environment
variable ``SPECTUNE_MASKED_GEMM``, read at import: ``kernel`` the default, or ``inductor`` for the where(m, x, 0)
graph inductor compiles itself), a benchmark switch (benchmarks/masked_gemm.py, benchmarks/step_time.py): both
compute the same products from the same distribution of masks.

This module imports without Triton (CPU installs); the kernels need it.
"""

from __future__ import annotations

import os

import torch

from spectune.methods import dropout_bits

MODES = ("kernel", "inductor")
MODE = os.environ.get("SPECTUNE_MASKED_GEMM", "kernel")
if MODE not in MODES:
    raise ValueError(f"SPECTUNE_MASKED_GEMM={MODE!r}: expected one of {MODES}")

BT = 64  # tokens per tile (tl.dot needs 16 or more)
BK = 128  # d_in per tile; a multiple of 8, so a tile's bits are whole bytes


def rank_block(r: int) -> int:
    """The tile width for rank r: a power of two, at least 16 (tl.dot's minimum)."""
    return max(16, 1 << (r - 1).bit_length())


def splits(tiles: int, length: int, sms: int) -> int:
    """How many programs share a reduction of ``length`` (a power of two): enough for about two programs per SM over
    ``tiles`` output tiles, each program still reducing over four tiles or more."""
    split = 1
    while tiles * split * 2 <= 2 * sms and length // (split * 2) >= 4 * BK:
        split *= 2
    return split


def multiprocessors(device: torch.device) -> int:
    """SMs of a CUDA device; 8 elsewhere (Triton's interpreter on CPU, where the split only shapes the test)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def supported(x: torch.Tensor) -> bool:
    """Whether :class:`~spectune.methods.lora_fused.DropoutMatmul` runs these kernels for x: :data:`MODE` is not
    ``inductor``, Triton is there, x is on CUDA (or Triton's interpreter is on), 2-D, contiguous, floating, with d_in a
    multiple of 8 (whole bytes per row)."""
    return (MODE != "inductor" and dropout_bits.triton is not None
            and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1") and x.dim() == 2 and x.is_contiguous()
            and x.shape[1] % 8 == 0 and x.dtype in (torch.bfloat16, torch.float16, torch.float32))


if dropout_bits.triton is not None:
    import triton
    import triton.language as tl

    @triton.jit
    def unpack_tile(byte, BT: tl.constexpr, BK: tl.constexpr):  # noqa: N803 (Triton's style)
        """A (BT, BK // 8) uint8 tile of packed bits as the (BT, BK) bool keep mask (bit k % 8 of byte k // 8)."""
        bit = (byte.to(tl.int32)[:, :, None] >> tl.arange(0, 8)[None, None, :]) & 1
        return tl.reshape(bit, (BT, BK)) != 0

    @triton.jit
    def masked_mm_kernel(x_ptr, bits_ptr, a_ptr, out_ptr, T, K, R, scale,  # noqa: N803
                         K_PER: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr,
                         IEEE: tl.constexpr):
        """out[split, t, :] = scale · Σ_{k in the split's range} (x ⊙ m)[t, k] Aᵀ[k, :], fp32."""
        pid_t = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_t * BT + tl.arange(0, BT)
        row_ok = rows < T
        rr = tl.arange(0, BR)
        k8 = K // 8
        acc = tl.zeros((BT, BR), dtype=tl.float32)
        for step in range(0, K_PER, BK):  # each split's range starts at a multiple of BK: no tile straddles two
            k0 = pid_s * K_PER + step
            ks = k0 + tl.arange(0, BK)
            k_ok = ks < K
            x = tl.load(x_ptr + rows[:, None].to(tl.int64) * K + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            cols = k0 // 8 + tl.arange(0, BK // 8)
            byte = tl.load(bits_ptr + rows[:, None].to(tl.int64) * k8 + cols[None, :],
                           mask=row_ok[:, None] & (cols < k8)[None, :], other=0)
            xm = tl.where(unpack_tile(byte, BT, BK), x, tl.zeros_like(x))
            at = tl.load(a_ptr + rr[None, :] * K + ks[:, None], mask=(rr < R)[None, :] & k_ok[:, None], other=0.0)
            if IEEE:
                acc += tl.dot(xm, at, input_precision="ieee")
            else:
                acc += tl.dot(xm, at)
        base = pid_s.to(tl.int64) * T * BR
        tl.store(out_ptr + base + rows[:, None] * BR + rr[None, :], acc * scale, mask=row_ok[:, None])

    @triton.jit
    def masked_mm_grad_kernel(g_ptr, x_ptr, bits_ptr, out_ptr, T, K, R, scale,  # noqa: N803
                              T_PER: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr,
                              IEEE: tl.constexpr):
        """out[split, :, k] = scale · Σ_{t in the split's range} gᵀ[:, t] (x ⊙ m)[t, k], fp32."""
        pid_k = tl.program_id(0)
        pid_s = tl.program_id(1)
        ks = pid_k * BK + tl.arange(0, BK)
        k_ok = ks < K
        rr = tl.arange(0, BR)
        cols = pid_k * (BK // 8) + tl.arange(0, BK // 8)
        k8 = K // 8
        acc = tl.zeros((BR, BK), dtype=tl.float32)
        for step in range(0, T_PER, BT):  # each split's range starts at a multiple of BT
            rows = pid_s * T_PER + step + tl.arange(0, BT)
            row_ok = rows < T
            x = tl.load(x_ptr + rows[:, None].to(tl.int64) * K + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            byte = tl.load(bits_ptr + rows[:, None].to(tl.int64) * k8 + cols[None, :],
                           mask=row_ok[:, None] & (cols < k8)[None, :], other=0)
            xm = tl.where(unpack_tile(byte, BT, BK), x, tl.zeros_like(x))
            gt = tl.load(g_ptr + rows[None, :] * R + rr[:, None], mask=(rr < R)[:, None] & row_ok[None, :], other=0.0)
            if IEEE:
                acc += tl.dot(gt, xm, input_precision="ieee")
            else:
                acc += tl.dot(gt, xm)
        base = pid_s.to(tl.int64) * BR * K
        tl.store(out_ptr + base + rr[:, None] * K + ks[None, :], acc * scale, mask=k_ok[None, :])


def launch_forward(x: torch.Tensor, bits: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """h = scale · (x ⊙ unpack(bits)) aᵀ in x's dtype (tokens × r)."""
    x, a = x.contiguous(), a.contiguous()  # no-ops for what DropoutMatmul passes, but V_Sᵀ (LoRA-Dash)
    t, k = x.shape
    r = a.shape[0]
    br = rank_block(r)
    tiles = triton.cdiv(t, BT)
    split = splits(tiles, k, multiprocessors(x.device))
    k_per = triton.cdiv(triton.cdiv(k, split), BK) * BK
    split = triton.cdiv(k, k_per)
    out = torch.empty((split, t, br), dtype=torch.float32, device=x.device)
    torch.library.wrap_triton(masked_mm_kernel)[(tiles, split)](
        x, bits, a, out, t, k, r, scale, K_PER=k_per, BT=BT, BK=BK, BR=br, IEEE=x.dtype == torch.float32)
    return out.sum(0)[:, :r].to(x.dtype).contiguous()


def launch_grad(g: torch.Tensor, x: torch.Tensor, bits: torch.Tensor, scale: float) -> torch.Tensor:
    """dA = scale · gᵀ (x ⊙ unpack(bits)) (r × d_in) in g's dtype."""
    g, x = g.contiguous(), x.contiguous()
    t, k = x.shape
    r = g.shape[1]
    br = rank_block(r)
    tiles = triton.cdiv(k, BK)
    split = splits(tiles, t, multiprocessors(x.device))
    t_per = triton.cdiv(triton.cdiv(t, split), BT) * BT
    split = triton.cdiv(t, t_per)
    out = torch.empty((split, br, k), dtype=torch.float32, device=x.device)
    torch.library.wrap_triton(masked_mm_grad_kernel)[(tiles, split)](
        g, x, bits, out, t, k, r, scale, T_PER=t_per, BT=BT, BK=BK, BR=br, IEEE=x.dtype == torch.float32)
    return out.sum(0)[:r].to(g.dtype)


if dropout_bits.triton is not None:

    @torch.library.triton_op("spectune::masked_mm", mutates_args=())
    def masked_mm(x: torch.Tensor, bits: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
        """``spectune::masked_mm``: scale · (x ⊙ unpack(bits)) aᵀ (:func:`launch_forward`)."""
        return launch_forward(x, bits, a, scale)

    @torch.library.triton_op("spectune::masked_mm_grad", mutates_args=())
    def masked_mm_grad(g: torch.Tensor, x: torch.Tensor, bits: torch.Tensor, scale: float) -> torch.Tensor:
        """``spectune::masked_mm_grad``: scale · gᵀ (x ⊙ unpack(bits)) (:func:`launch_grad`)."""
        return launch_grad(g, x, bits, scale)
