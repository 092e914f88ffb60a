"""spectune.methods.masked_gemm: LoRA's GEMMs on the dropped input with the mask applied as x is loaded, against
float64 products written here with the same mask; DropoutMatmul through them; and on a GPU, in bf16.

On CPU the kernels run through Triton's interpreter where Triton is installed (not in the CPU-only CI); on CUDA
compiled."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from spectune.methods import masked_gemm


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


INTERPRETED = """
import torch
from spectune.methods import dropout_bits, masked_gemm
from spectune.methods.lora_fused import pack_mask, unpack_mask

def check(t, k, r, p, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(t, k, generator=gen)
    a = torch.randn(r, k, generator=gen)
    g = torch.randn(t, r, generator=gen)
    keep = torch.rand(t, k, generator=gen) >= p
    bits = pack_mask(keep)
    scale = 1.0 / (1.0 - p)
    xm = x.double() * keep
    h = masked_gemm.launch_forward(x, bits, a, scale)
    assert h.dtype == torch.float32 and h.shape == (t, r) and h.is_contiguous()
    torch.testing.assert_close(h.double(), xm @ a.double().t() * scale, rtol=1e-5, atol=1e-4)
    da = masked_gemm.launch_grad(g, x, bits, scale)
    assert da.dtype == torch.float32 and da.shape == (r, k)
    torch.testing.assert_close(da.double(), g.double().t() @ xm * scale, rtol=1e-5, atol=1e-4)
    # LoRA-Dash's frozen factor V_S^T is a transposed view: taken as given
    h2 = masked_gemm.masked_mm(x, bits, a.t().contiguous().t(), scale)
    torch.testing.assert_close(h2, h)
    return masked_gemm.splits(-(-t // masked_gemm.BT), k, 8), masked_gemm.splits(-(-k // masked_gemm.BK), t, 8)

# d_in split over programs (1032 = 2 splits, the last tile partial), tokens not a multiple of the tile, rank 5 < 16
assert check(96, 1032, 5, 0.3, 1)[0] == 2
# tokens split over programs in the backward kernel (1100 tokens: 2 splits), d_in 136 (one full and one partial tile)
assert check(1100, 136, 32, 0.05, 2)[1] == 2
print("checked")
"""


@pytest.mark.skipif(not has_triton(), reason="Triton is not installed (CPU-only torch): the kernels cannot run here")
def test_kernels_equal_float64_products_with_the_same_mask_interpreted():
    """Forward h = (x⊙m)aᵀ/(1−p) and backward dA = gᵀ(x⊙m)/(1−p) against float64 products, fp32 inputs (IEEE dot),
    with splits over d_in and over tokens and partial tiles, and a transposed view for A."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0 and out.stdout.strip() == "checked", out.stderr[-3000:]


THROUGH_DROPOUT_MATMUL = """
import torch
from spectune.methods import lora_fused, masked_gemm

lora_fused.packed_draw = lambda x: True  # the compiled CUDA path, here on CPU through the interpreter
p = 0.2
gen = torch.Generator().manual_seed(4)
x = torch.randn(70, 264, generator=gen).requires_grad_()
a = torch.randn(6, 264, generator=gen).requires_grad_()
g = torch.randn(70, 6, generator=gen)
saved = []
with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
    h = lora_fused.DropoutMatmul.apply(x, a, p)
assert saved[0] is x and saved[2] is a and saved[1].dtype == torch.uint8 and len(saved) == 3
keep = lora_fused.unpack_mask(saved[1], x.shape)
assert 0 < int((~keep).sum()) < keep.numel()
gx, ga = torch.autograd.grad(h, (x, a), g)
xr, ar = x.detach().double().requires_grad_(), a.detach().double().requires_grad_()
ref = (xr * keep / (1 - p)) @ ar.t()
rx, ra = torch.autograd.grad(ref, (xr, ar), g.double())
for got, want in ((h, ref), (gx, rx), (ga, ra)):
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
print(masked_gemm.MODE)
"""


@pytest.mark.skipif(not has_triton(), reason="Triton is not installed (CPU-only torch): the kernels cannot run here")
@pytest.mark.parametrize("mode", ["kernel", "inductor"])
def test_dropout_matmul_through_the_kernels_follows_its_own_mask_interpreted(mode):
    """DropoutMatmul's compiled CUDA path (SPECTUNE_MASKED_GEMM=kernel: keep_bits then the masked GEMMs; inductor:
    keep_bits then where(m, x, 0) and torch.mm), forced on CPU under Triton's interpreter: h, dx, dA equal float64
    autograd through
    x·m/(1−p) for the mask it saved, and it saves x, the packed mask and a, nothing else. (Traced by torch.compile,
    on CUDA only: test_dropout_bits.py's test_cuda_dropout_matmul_gradients_follow_its_own_mask.)"""
    env = {**os.environ, "TRITON_INTERPRET": "1", "SPECTUNE_MASKED_GEMM": mode}
    out = subprocess.run([sys.executable, "-c", THROUGH_DROPOUT_MATMUL], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0 and out.stdout.strip() == mode, out.stderr[-3000:]


def test_splits_keep_two_programs_per_sm_and_four_tiles_each():
    """The split rule on the H200 (132 SMs) at the step-time table's shapes, worked out by hand: forward over 64 token
    tiles splits d_in 4096 in 4 (and 14336 in 4), backward over 32 (or 112) d_in tiles splits 4096 tokens in 8 (2)."""
    assert masked_gemm.splits(64, 4096, 132) == 4
    assert masked_gemm.splits(64, 14336, 132) == 4
    assert masked_gemm.splits(32, 4096, 132) == 8
    assert masked_gemm.splits(112, 4096, 132) == 2
    assert masked_gemm.splits(1, 256, 132) == 1  # too short to split: each program reduces over 4 tiles or more
    assert [masked_gemm.rank_block(r) for r in (1, 8, 16, 17, 32, 40)] == [16, 16, 16, 32, 32, 64]


def test_mode_switch_refuses_an_unknown_value():
    env = {**os.environ, "SPECTUNE_MASKED_GEMM": "fast"}
    out = subprocess.run([sys.executable, "-c", "import spectune.methods.masked_gemm"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "SPECTUNE_MASKED_GEMM='fast'" in out.stderr and "kernel" in out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the kernels compiled on CUDA")
@pytest.mark.parametrize("width", [4096, 1000])
def test_cuda_bf16_kernels_against_float64(width):
    """bf16 at a LoRA input width (and one not a multiple of the tile), tokens 4096, rank 32: within bf16 rounding of
    the float64 products for the same mask."""
    from spectune.methods.lora_fused import pack_mask

    gen = torch.Generator(device="cuda").manual_seed(3)
    x = torch.randn(4096, width, device="cuda", generator=gen).bfloat16()
    a = (torch.randn(32, width, device="cuda", generator=gen) / width**0.5).bfloat16()
    g = torch.randn(4096, 32, device="cuda", generator=gen).bfloat16()
    keep = torch.rand(4096, width, device="cuda", generator=gen) >= 0.05
    bits = pack_mask(keep)
    xm = x.double() * keep
    h = masked_gemm.masked_mm(x, bits, a, 1 / 0.95)
    torch.testing.assert_close(h.double(), xm @ a.double().t() / 0.95, rtol=2e-2, atol=2e-2)
    da = masked_gemm.masked_mm_grad(g, x, bits, 1 / 0.95)
    ref = g.double().t() @ xm / 0.95
    torch.testing.assert_close(da.double(), ref, rtol=2e-2, atol=2e-2 * ref.abs().max().item())
