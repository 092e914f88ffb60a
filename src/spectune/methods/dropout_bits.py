"""LoRA's dropout keep-masks drawn on the GPU eight to a byte, four Bernoulli draws per Philox call.

drop(x) = x·m/(1−p) with m_i ~ Bernoulli(1−p) independent per element (Srivastava et al. 2014; PEFT's ``lora_dropout``).
Inductor's lowering of ``torch.native_dropout`` spends one Philox4x32-10 call (Salmon et al. 2011) per element and
keeps one of its four 32-bit words. LoRA on five modules of a LLaMA-3-8B block draws 126 M masks per layer and step,
and those draws were most of LoRA's time over the frozen model in the compiled step on an H200 (benchmarks/NOTES.md,
"Change 6"). Here one call gives four words and each word one mask bit, written straight into the packed layout
:class:`spectune.methods.lora_fused.DropoutMatmul` keeps for backward (element i is bit i % 8 of byte i // 8):

    byte j = Σ_k [w_k ≥ T] · 2^k,   (w_0 … w_3) = Philox4x32-10(counter 2j, key), (w_4 … w_7) = … (counter 2j + 1),
    T = round(p · 2³²),  so P(m_i = 0) = T / 2³² (within 2⁻³³ of p; ``torch.rand`` < p resolves p to 2⁻²⁴).

The key is a 62-bit seed drawn per call on the device from torch's generator (``torch.randint``: seeded by the run's
seed, inside the compiled graph), so masks are independent across modules and steps. The masks are the same in
distribution as PEFT's, not the same draws. DropoutMatmul uses this only under torch.compile on CUDA
(``lora_fused.packed_draw``); eager mode keeps PEFT's own draw. docs/methods.md, "LoRA dropout compiled on CUDA".

This module imports without Triton (CPU installs); :func:`keep_bits` needs it.
"""

from __future__ import annotations

from typing import Any

import torch

BLOCK = 1024  # bytes (8 K elements) per Triton program


def threshold(p: float) -> int:
    """T = round(p·2³²): a 32-bit word below T drops its element (P(drop) = T/2³²). p in (0, 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout probability {p} outside (0, 1): no mask to draw")
    return min(round(p * 2**32), 2**32 - 1)


def new_seed(device: torch.device | str) -> torch.Tensor:
    """A fresh 62-bit Philox key on ``device`` (int64, shape (1,)) from torch's generator for that device."""
    return torch.randint(0, 2**62, (1,), device=device, dtype=torch.int64)


try:  # CUDA wheels of torch bring Triton; CPU installs go without (their path never calls keep_bits)
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def launch(kernel: Any, seed: torch.Tensor, numel: int, thresh: int) -> torch.Tensor:
    """Run ``kernel`` (:data:`keep_bits_kernel`): ceil(numel/8) bytes of keep bits for a 32-bit threshold
    (:func:`threshold`) and a Philox key ``seed`` (int64, shape (1,)). Through ``torch.library.wrap_triton``, so that
    traced by torch.compile the launch is inductor's own (no Python call per launch at run time)."""
    n_bytes = (numel + 7) // 8
    out = torch.empty(n_bytes, dtype=torch.uint8, device=seed.device)
    torch.library.wrap_triton(kernel)[((n_bytes + BLOCK - 1) // BLOCK,)](seed, out, n_bytes, thresh, BLOCK=BLOCK)
    return out


if triton is not None:  # defined at import, so torch.compile never traces their creation

    @triton.jit
    def keep_bits_kernel(seed_ptr, out_ptr, n_bytes, thresh, BLOCK: tl.constexpr):  # noqa: N803 (Triton's style)
        """Byte j = Σ_k [w_k ≥ T]·2^k over the 8 words of Philox4x32-10 at counters 2j and 2j + 1."""
        j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        seed = tl.load(seed_ptr)
        t = tl.cast(thresh, tl.uint32)  # not thresh.to: inductor's mutation analysis passes scalars as constants
        w0, w1, w2, w3 = tl.randint4x(seed, 2 * j)  # 64-bit counter: (lo, hi) words of 2j, then 0, 0
        w4, w5, w6, w7 = tl.randint4x(seed, 2 * j + 1)
        bits = ((w0 >= t).to(tl.uint32) | ((w1 >= t).to(tl.uint32) << 1) | ((w2 >= t).to(tl.uint32) << 2)
                | ((w3 >= t).to(tl.uint32) << 3) | ((w4 >= t).to(tl.uint32) << 4) | ((w5 >= t).to(tl.uint32) << 5)
                | ((w6 >= t).to(tl.uint32) << 6) | ((w7 >= t).to(tl.uint32) << 7))
        tl.store(out_ptr + j, bits.to(tl.uint8), mask=j < n_bytes)

    @torch.library.triton_op("spectune::keep_bits", mutates_args=())
    def keep_bits_op(seed: torch.Tensor, numel: int, thresh: int) -> torch.Tensor:
        """``spectune::keep_bits``: one kernel launch. A ``triton_op``, not an opaque ``custom_op``: torch.compile
        traces into it and inductor launches the kernel from its generated code, where a ``custom_op`` goes through
        Python at every launch (lora's idle GPU time went from 2.6× PEFT LoRA's to 0.6× in the 40814c0 table:
        benchmarks/NOTES.md, "Change 7")."""
        return launch(keep_bits_kernel, seed, numel, thresh)


def keep_bits(numel: int, p: float, device: torch.device) -> torch.Tensor:
    """Keep-mask bits of ``numel`` elements for dropout probability p, packed 8 to a byte (module docstring)."""
    if triton is None:
        raise RuntimeError("LoRA dropout on CUDA draws its masks with a Triton kernel (spectune.methods.dropout_bits), "
                           "and Triton is not installed: pip install triton (torch's CUDA wheels bring it)")
    return keep_bits_op(new_seed(device), numel, threshold(p))
