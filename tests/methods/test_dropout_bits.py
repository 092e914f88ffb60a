"""spectune.methods.dropout_bits: the packed keep-mask kernel against an independent Philox4x32-10 written here in
Python integers (checked on Random123's known-answer vectors), bit for bit; the drop rate and the independence of the
eight bit positions; and, on a GPU, DropoutMatmul's gradients against its own mask.

The kernel runs on CPU through Triton's interpreter where Triton is installed (not in the CPU-only CI, whose torch
wheel ships without it); on CUDA it runs as compiled."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch

from spectune.methods import dropout_bits

M0, M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers (Salmon et al. 2011, Random123's philox.h)
W0, W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
MASK = 0xFFFFFFFF


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Random123's philox4x32 with 10 rounds, in Python integers: round(ctr, key) = (hi(M1·c2) ⊕ c1 ⊕ k0, lo(M1·c2),
    hi(M0·c0) ⊕ c3 ⊕ k1, lo(M0·c0)), the key bumped by (W0, W1) between rounds."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return c0, c1, c2, c3


def reference_bits(seed: int, numel: int, p: float) -> torch.Tensor:
    """The module docstring's formula, byte by byte."""
    t = round(p * 2**32)
    key = (seed & MASK, seed >> 32)
    out = []
    for j in range((numel + 7) // 8):
        words = philox4x32_10((2 * j, 0, 0, 0), key) + philox4x32_10((2 * j + 1, 0, 0, 0), key)
        out.append(sum(1 << k for k, w in enumerate(words) if w >= t))
    return torch.tensor(out, dtype=torch.uint8)


def test_reference_philox_matches_random123_known_answers():
    """Random123's kat_vectors for philox4x32 with 10 rounds (zero and all-ones counter and key)."""
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    ones = (MASK, MASK, MASK, MASK)
    assert philox4x32_10(ones, (MASK, MASK)) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)


def test_threshold_rounds_p_to_32_bits_and_refuses_no_mask():
    assert dropout_bits.threshold(0.05) == round(0.05 * 2**32)
    assert abs(dropout_bits.threshold(0.1) / 2**32 - 0.1) <= 2**-33
    for p in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="outside"):
            dropout_bits.threshold(p)


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


INTERPRETED = """
import sys, torch
from spectune.methods import dropout_bits
seed, numel, p = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = torch.tensor([seed], dtype=torch.int64)
out = dropout_bits.launch(dropout_bits.keep_bits_kernel, s, numel, dropout_bits.threshold(p))
sys.stdout.write(out.numpy().tobytes().hex())
"""


def draw(seed: int, numel: int, p: float, device: str) -> torch.Tensor:
    """The kernel's bytes for one seed: compiled on CUDA; on CPU, Triton's interpreter in a fresh process (it must be
    switched on before Triton is imported)."""
    if device == "cpu":
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        out = subprocess.run([sys.executable, "-c", INTERPRETED, str(seed), str(numel), str(p)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return torch.frombuffer(bytearray.fromhex(out.stdout), dtype=torch.uint8)
    s = torch.tensor([seed], dtype=torch.int64, device=device)
    return dropout_bits.launch(dropout_bits.keep_bits_kernel, s, numel, dropout_bits.threshold(p)).cpu()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.skipif(not has_triton(), reason="Triton is not installed (CPU-only torch): the kernel cannot run here")
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_matches_reference_bit_for_bit(device):
    """Three seeds (one above 2³², so both key words count), a length that is not a multiple of 8 or of the block."""
    for seed, numel, p in ((0, 8 * 1024 + 13, 0.05), (12345, 2000, 0.3), (2**40 + 7, 777, 0.5)):
        got = draw(seed, numel, p, device)
        assert got.shape == ((numel + 7) // 8,)
        assert torch.equal(got, reference_bits(seed, numel, p)), (seed, numel, p)


@pytest.mark.skipif(not has_triton(), reason="Triton is not installed (CPU-only torch): the kernel cannot run here")
@pytest.mark.parametrize("device", DEVICES)
def test_drop_rate_per_bit_position(device):
    """Each of the 8 bit positions (words of two Philox calls) drops at rate p within 5 standard errors, and two
    seeds give different masks."""
    n, p = 8 * 2**16, 0.05
    a = draw(7, n, p, device)
    bits = torch.bitwise_and(torch.bitwise_right_shift(a.unsqueeze(-1), torch.arange(8, dtype=torch.uint8)), 1)
    drop = 1.0 - bits.double().mean(0)
    se = math.sqrt(p * (1 - p) / (n // 8))
    assert ((drop - p).abs() < 5 * se).all(), drop
    assert not torch.equal(a, draw(8, n, p, device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path of DropoutMatmul")
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_dropout_matmul_gradients_follow_its_own_mask(compiled, dtype):
    """With a = I, h = drop(x): the mask is read off h, the drop rate is p, and dx, da are those of that mask
    (float64 reference). Eager: native_dropout's draw; compiled: keep_bits's (lora_fused.packed_draw), applied as
    where(m, x, 0) with 1/(1−p) on h."""
    from spectune.methods.lora_fused import DropoutMatmul

    torch.manual_seed(0)
    n, d, p = 4096, 64, 0.1
    x = (torch.rand(n, d, device="cuda", dtype=dtype) + 0.5).requires_grad_()
    a = torch.eye(d, device="cuda", dtype=dtype).requires_grad_()
    fn = torch.compile(DropoutMatmul.apply, fullgraph=True) if compiled else DropoutMatmul.apply
    h = fn(x, a, p)
    keep = h.detach() != 0
    rate = 1.0 - keep.double().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / keep.numel())
    torch.testing.assert_close(h.detach(), x.detach() * keep / (1 - p))
    g = torch.randn_like(h)
    h.backward(g)
    xd = x.detach().double() * keep / (1 - p)
    tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-4}  # fp32 sums over 4096 tokens
    torch.testing.assert_close(x.grad.double(), (g.double() @ a.detach().double()) * keep / (1 - p), **tol)
    torch.testing.assert_close(a.grad.double(), g.double().t() @ xd, **tol)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="tracing a triton_op needs compiled Triton kernels (CUDA), not the interpreter's")
def test_keep_bits_traces_into_one_graph():
    """torch.compile (inductor, fullgraph) traces into spectune::keep_bits (a triton_op: inductor launches the kernel
    itself), the key drawn inside the graph: two calls, two masks, each applied as x·m/(1−p)."""
    from spectune.methods.lora_fused import apply_mask, unpack_mask

    def dropped(x: torch.Tensor) -> torch.Tensor:
        return apply_mask(x, unpack_mask(dropout_bits.keep_bits(x.numel(), 0.25, x.device), x.shape), 0.25)

    f = torch.compile(dropped, fullgraph=True)
    x = torch.rand(64, 48, device="cuda") + 1.0
    a, b = f(x), f(x)
    assert a.shape == x.shape and not torch.equal(a, b)  # a fresh key per call, drawn inside the graph
    for h in (a, b):
        keep = h != 0
        torch.testing.assert_close(h[keep], x[keep] / 0.75)


@pytest.mark.skipif(not has_triton(), reason="Triton is not installed (CPU-only torch): the kernel cannot be compiled")
@pytest.mark.parametrize("thresh_kind", ["constant", "i32"])
def test_kernel_compiles_to_ttir_with_the_threshold_constant_or_not(thresh_kind):
    """Triton's front end turns the kernel into TTIR (for an H100/H200 target; no GPU needed) with the threshold as a
    runtime scalar and as a constant, which is how inductor's analysis of a triton_op's stores passes scalars: with
    ``thresh.to(...)`` that analysis failed on the H200 and fell back to "every input is mutated", logging a
    traceback per call (results/gpu/step_time_40814c0_d005_fusedadamw.log)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource, make_backend

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    options = backend.parse_options({})
    context = triton._C.libtriton.ir.context()
    triton._C.libtriton.ir.load_dialects(context)
    backend.load_dialects(context)
    constant = thresh_kind == "constant"
    signature = {"seed_ptr": "*i64", "out_ptr": "*u8", "n_bytes": "i32",
                 "thresh": "constexpr" if constant else "i32", "BLOCK": "constexpr"}
    constexprs = {(3,): dropout_bits.threshold(0.05), (4,): dropout_bits.BLOCK} if constant \
        else {(4,): dropout_bits.BLOCK}
    source = ASTSource(dropout_bits.keep_bits_kernel, signature, constexprs)
    ttir = str(source.make_ir(target, options, backend.get_codegen_implementation(options),
                              backend.get_module_map(), context))
    assert "tt.store" in ttir and "keep_bits_kernel" in ttir
