"""The fused LoRA forward (spectune.methods.lora_fused) against PEFT's own ``lora.Linear`` forward, and LoRA-Dash's
fused layer against its hook path: outputs, gradients of the input, A, B (and δ), merged weights, save / load, with
dropout (same seed) and without, in float64; no graph breaks under torch.compile's tracer. The dropout branch
(``DropoutMatmul``: x and a bit-packed mask kept for backward, not the dropped copy) against autograd through an
explicit mask, the packing round trip, and what it saves."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from spectune.methods import build_method, dropout_bits, lora_fused
from spectune.methods.lora_dash import DELTA, LoRADash, dash_layers
from spectune.methods.lora_dash_layer import FusedDashLinear
from spectune.methods.lora_fused import (
    DropoutMatmul,
    FusedLoraLinear,
    dropout_mm,
    pack_mask,
    unpack_mask,
    unpack_mask_forward,
)

TARGETS = ["fc1", "fc2"]


pytestmark = pytest.mark.usefixtures("single_thread")


class MLP(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16, dtype=dtype)
        self.fc2 = nn.Linear(16, 10, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def base(dtype: torch.dtype = torch.float64) -> MLP:
    torch.manual_seed(0)
    return MLP(dtype)


def attach(name: str, fused: bool, dropout: float, dtype: torch.dtype = torch.float64, **kw):
    method = build_method(name, r=4, alpha=8.0, dropout=dropout, target_modules=TARGETS, fused=fused, **kw)
    torch.manual_seed(1)
    model = method.attach(base(dtype), None)
    with torch.no_grad():  # B ≠ 0 so the update is tested, the same in both models
        g = torch.Generator().manual_seed(2)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return method, model


def switch_dash(method: LoRADash, model: nn.Module) -> None:
    method.switch(model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, layer in dash_layers(model):
            d = getattr(layer, DELTA)["default"]
            d.copy_(torch.randn(d.shape, generator=g, dtype=torch.float64).to(d.dtype))


def x_batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)


def run(model: nn.Module, x: torch.Tensor, seed: int = 5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Train-mode output and gradients of every trainable tensor and of the input, key "x" (dropout from ``seed``)."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    torch.manual_seed(seed)
    y = model(x)
    (y.square().sum() + y.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return y.detach(), {**grads, "x": x.grad.clone()}


def layer_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if hasattr(m, "lora_A") and isinstance(m.lora_A, nn.ModuleDict)}


@pytest.mark.parametrize("name", ["lora", "plora"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_lora_equals_peft(name: str, dropout: float) -> None:
    _, plain = attach(name, False, dropout)
    _, fused = attach(name, True, dropout)
    assert layer_types(fused) == {FusedLoraLinear} and FusedLoraLinear not in layer_types(plain)
    assert fused.state_dict().keys() == plain.state_dict().keys()  # PEFT's names: the same state dict
    for k, v in plain.state_dict().items():
        assert torch.equal(v, fused.state_dict()[k]), k
    x = x_batch()
    y0, g0 = run(plain, x)
    y1, g1 = run(fused, x)
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    assert g0.keys() == g1.keys() and any("lora_A" in k for k in g0) and any("lora_B" in k for k in g0)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-11, atol=1e-12, msg=k)
    if dropout:  # the masks really act: another seed gives another output
        assert not torch.allclose(run(fused, x, seed=6)[0], y1)
    # eval (no dropout), the disabled adapter and the merged model
    fused.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-12, atol=1e-12)
        with fused.disable_adapter():
            torch.testing.assert_close(fused(x), base()(x), rtol=0, atol=0)
        m0, m1 = copy.deepcopy(plain).merge_and_unload(), copy.deepcopy(fused).merge_and_unload()
        assert type(m1.fc1) is nn.Linear
        torch.testing.assert_close(m1.fc1.weight, m0.fc1.weight, rtol=0, atol=0)
        torch.testing.assert_close(m1(x), fused(x), rtol=1e-12, atol=1e-12)


def test_fused_lora_save_load_round_trip(tmp_path: Path) -> None:
    from peft import PeftModel

    method, fused = attach("lora", True, 0.1)
    method.save(fused, tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "_custom_modules" not in cfg  # the saved config is PEFT's plain LoRA config
    _, plain = attach("lora", False, 0.1)
    plain.save_pretrained(str(tmp_path / "plain"))
    assert json.loads((tmp_path / "plain" / "adapter_config.json").read_text()) == cfg
    loaded = method.load_adapter(base(), tmp_path / "adapter")
    again = PeftModel.from_pretrained(base(), str(tmp_path / "adapter"))
    x = x_batch()
    fused.eval()
    with torch.no_grad():
        for other in (loaded, again):
            other.eval()
            torch.testing.assert_close(other(x), fused(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_dash_equals_hook_path(dropout: float, tmp_path: Path) -> None:
    kw = dict(s=2, t=1, select="top_sigma", svd_cache=False)
    m_plain, plain = attach("lora_dash", False, dropout, **kw)
    m_fused, fused = attach("lora_dash", True, dropout, **kw)
    assert layer_types(fused) == {FusedDashLinear}
    assert all(not layer._forward_hooks for _, layer in dash_layers(fused))  # no hook: the forward adds the term
    x = x_batch()
    # before the switch: plain LoRA in both, δ gets no gradient
    y0, g0 = run(plain, x)
    y1, g1 = run(fused, x)
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    assert not any(DELTA in k for k in g1)
    for model, method in ((plain, m_plain), (fused, m_fused)):
        switch_dash(method, model)
    assert fused.state_dict().keys() == plain.state_dict().keys()
    y0, g0 = run(plain, x)
    y1, g1 = run(fused, x)
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    assert any(DELTA in k for k in g0) and g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-11, atol=1e-12, msg=k)
    fused.eval()
    with torch.no_grad():
        merged = m_fused.merged(fused)  # the dash term is merged in fp32 (LoRADash.merged): 1e-7 off the forward
        torch.testing.assert_close(merged(x), fused(x), rtol=1e-5, atol=1e-6)
        merged_plain = m_plain.merged(plain)
        for key in ("fc1", "fc2"):
            torch.testing.assert_close(getattr(merged, key).weight, getattr(merged_plain, key).weight, rtol=0, atol=0)
    m_fused.save(fused, tmp_path / "dash")
    loaded = LoRADash(m_fused.spec).load_adapter(base(), tmp_path / "dash")
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), fused(x), rtol=1e-12, atol=1e-12)


def test_fallback_paths_are_peft() -> None:
    """Mixed-adapter batches, merged adapters: PEFT's forward runs (and LoRA-Dash's term is still added)."""
    method, fused = attach("lora_dash", True, 0.0, s=2, t=1, select="top_sigma", svd_cache=False)
    switch_dash(method, fused)
    fused.eval()
    x = x_batch()
    layer = fused.base_model.model.fc1
    with torch.no_grad():
        want = layer(x)
        with pytest.raises(ValueError, match="mixed-adapter"):
            layer(x, adapter_names=["default"] * 3)
        assert not layer.fusable((), {"adapter_names": ["default"] * 3})
        layer.merge()
        assert not layer.fusable((), {})
        torch.testing.assert_close(layer(x), want, rtol=1e-12, atol=1e-12)  # W + sBA, plus the dash term
        layer.unmerge()


def test_bf16_model_with_fp32_adapters() -> None:
    """Pure bf16 weights, PEFT's fp32 adapter masters: the fused path computes in bf16, grads stay fp32 and close."""
    _, plain = attach("lora", False, 0.0, dtype=torch.bfloat16)
    _, fused = attach("lora", True, 0.0, dtype=torch.bfloat16)
    assert fused.base_model.model.fc1.lora_A["default"].weight.dtype == torch.float32  # autocast_adapter_dtype
    x = x_batch(torch.bfloat16)
    y0, g0 = run(plain, x)
    y1, g1 = run(fused, x)
    assert y1.dtype == torch.bfloat16
    torch.testing.assert_close(y1.float(), y0.float(), rtol=3e-2, atol=3e-2)
    for k in g0:
        assert g1[k].dtype == (torch.bfloat16 if k == "x" else torch.float32)
        torch.testing.assert_close(g1[k], g0[k], rtol=5e-2, atol=5e-2 * float(g0[k].abs().max()), msg=k)


@pytest.mark.parametrize("name", ["lora", "lora_dash"])
def test_no_graph_breaks(name: str) -> None:
    kw = dict(s=2, t=1, select="top_sigma", svd_cache=False) if name == "lora_dash" else {}
    method, model = attach(name, True, 0.1, dtype=torch.float32, **kw)
    if name == "lora_dash":
        switch_dash(method, model)
    model.train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x_batch(torch.float32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    torch._dynamo.reset()


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 5), (4, 16), (1, 1)])
def test_mask_packing_round_trip(shape: tuple[int, ...]) -> None:
    keep = torch.rand(shape, generator=torch.Generator().manual_seed(7)) > 0.4
    packed = pack_mask(keep)
    n = keep.numel()
    assert packed.dtype == torch.uint8 and packed.shape == ((n + 7) // 8,)
    assert torch.equal(unpack_mask(packed, keep.shape), keep)
    assert torch.equal(unpack_mask(pack_mask(torch.ones(shape, dtype=torch.bool)), shape), torch.ones(shape).bool())
    assert torch.equal(unpack_mask_forward(packed, keep.shape), keep)  # the forward's other expression


def test_packed_draw_compiled_saves_what_the_native_draw_saves() -> None:
    """Through inductor's decompositions and min-cut partitioner (saved_activations.py --compiled), the graph of the
    CUDA path (masks from an opaque operator, packed; --packed-draw) keeps for backward exactly the bytes of the
    native_dropout path: x and the packed bits. With the same unpacking operators in forward and backward, CSE
    merged them and the partitioner kept unpacked masks and drop(x) instead (1.6× the bytes here; +2.7 GiB on the
    H200)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "saved_activations.py"
    spec = importlib.util.spec_from_file_location("saved_activations", path)
    sa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sa)
    tiny = ["--hidden", "256", "--intermediate", "512", "--heads", "4", "--kv-heads", "2", "--vocab", "128", "--r", "8",
            "--compiled"]
    native = sa.main(tiny)
    packed = sa.main([*tiny, "--packed-draw"])
    assert native["lora dropout 0.05"] > native["floor"]  # the adapters keep x's and the bits
    assert packed == native
    assert not lora_fused.packed_draw(torch.zeros(1)) and dropout_bits.keep_bits.__module__ == dropout_bits.__name__


def test_dropout_matmul_equals_autograd_with_the_same_mask() -> None:
    """drop(x) aᵀ through DropoutMatmul: output and dx, da equal autograd through x·m/(1−p) with the mask it drew
    (recovered from the packed copy it saved); it saves x, a and the packed mask, nothing else of x's size."""
    p = 0.3
    x = torch.randn(6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_(True)
    a = torch.randn(4, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    g = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.manual_seed(11)
        h = DropoutMatmul.apply(x, a, p)
    assert [t.dtype for t in saved] == [torch.float64, torch.uint8, torch.float64]
    assert saved[0] is x and saved[2] is a and saved[1].numel() == (x.numel() + 7) // 8
    keep = unpack_mask(saved[1], x.shape)
    torch.manual_seed(11)  # the draw is nn.Dropout's (and so PEFT's) for the seed
    assert torch.equal(nn.Dropout(p)(torch.ones_like(x)) != 0, keep)
    assert 0 < int(keep.sum()) < keep.numel()
    gx, ga = torch.autograd.grad(h, (x, a), g)
    xr, ar = x.detach().clone().requires_grad_(True), a.detach().clone().requires_grad_(True)
    ref = (xr * keep / (1 - p)) @ ar.t()
    rx, ra = torch.autograd.grad(ref, (xr, ar), g)
    torch.testing.assert_close(h, ref, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(gx, rx, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(ga, ra, rtol=1e-14, atol=1e-14)
    # a frozen factor (LoRA-Dash's V_S): x is not kept, only the mask and a
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.manual_seed(11)
        h2 = DropoutMatmul.apply(x, a.detach(), p)
    assert [t.dtype for t in saved] == [torch.uint8, torch.float64]
    torch.testing.assert_close(torch.autograd.grad(h2, x, g)[0], rx, rtol=1e-14, atol=1e-14)


def test_dropout_matmul_select_form_equals_autograd_with_the_same_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled CUDA form of DropoutMatmul (where(m, x, 0) before the GEMM, 1/(1−p) on the tokens × r side;
    lora_fused.packed_draw), forced on CPU with a stand-in for keep_bits: output, dx and da equal autograd through
    x·m/(1−p) in float64 for the mask it saved, and it saves what the native path saves (x, packed bits, a)."""
    p = 0.3
    drawn: list[torch.Tensor] = []

    def standin(numel: int, q: float, device: torch.device) -> torch.Tensor:
        drawn.append(pack_mask(torch.rand(numel, generator=torch.Generator().manual_seed(5)) >= q))
        return drawn[-1]

    monkeypatch.setattr(lora_fused, "packed_draw", lambda x: True)
    monkeypatch.setattr(dropout_bits, "keep_bits", standin)
    x = torch.randn(6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_(True)
    a = torch.randn(4, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    g = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        h = DropoutMatmul.apply(x, a, p)
    assert len(drawn) == 1 and saved[0] is x and saved[1] is drawn[0] and saved[2] is a and len(saved) == 3
    keep = torch.rand(x.numel(), generator=torch.Generator().manual_seed(5)).view(x.shape) >= p  # drawn anew
    assert 0 < int(keep.sum()) < keep.numel()
    gx, ga = torch.autograd.grad(h, (x, a), g)
    xr, ar = x.detach().clone().requires_grad_(True), a.detach().clone().requires_grad_(True)
    ref = (xr * keep.double() * (1 / (1 - p))) @ ar.t()
    rx, ra = torch.autograd.grad(ref, (xr, ar), g)
    for got, want in ((h, ref), (gx, rx), (ga, ra)):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_dropout_mm_without_an_active_dropout_is_plain() -> None:
    """p = 0 (PEFT's nn.Identity), eval mode: no mask drawn, a plain torch.mm, equal to the unfused product."""
    x = torch.randn(6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_(True)
    a = torch.randn(4, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    for drop in (nn.Identity(), nn.Dropout(0.3).eval(), nn.Dropout(0.0).train()):
        state = torch.get_rng_state()
        h = dropout_mm(x, a, drop)
        assert h.grad_fn.name() == "MmBackward0" and torch.equal(torch.get_rng_state(), state)
        torch.testing.assert_close(h, x @ a.t(), rtol=0, atol=0)
    assert "DropoutMatmul" in dropout_mm(x, a, nn.Dropout(0.3).train()).grad_fn.name()


def test_dropout_matmul_compiles_to_the_same_gradients() -> None:
    """Under torch.compile (fullgraph, AOTAutograd with eager kernels: the same RNG as eager) the branch gives the
    eager output and gradients with the same seed."""
    x = torch.randn(6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_(True)
    a = torch.randn(4, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    drop = nn.Dropout(0.3).train()

    def loss(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return dropout_mm(x, a, drop).square().sum()

    torch.manual_seed(12)
    want = torch.autograd.grad(loss(x, a), (x, a))
    torch._dynamo.reset()
    torch.manual_seed(12)
    got = torch.autograd.grad(torch.compile(loss, backend="aot_eager", fullgraph=True)(x, a), (x, a))
    torch._dynamo.reset()
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lora", "lora_dash"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_compiled_fused_layers_equal_peft(name: str, dropout: float) -> None:
    """Under torch.compile (fullgraph, AOTAutograd with eager kernels, so the eager RNG) the fused layers take their
    compiled form (the update added out of place, one GEMM for LoRA's and the dash term) and still give PEFT's
    (and the hook path's) output and gradients in float64 with the same seed."""
    kw = dict(s=2, t=1, select="top_sigma", svd_cache=False) if name == "lora_dash" else {}
    m_plain, plain = attach(name, False, dropout, **kw)
    m_fused, fused = attach(name, True, dropout, **kw)
    if name == "lora_dash":
        switch_dash(m_plain, plain)
        switch_dash(m_fused, fused)
    x = x_batch()
    y0, g0 = run(plain, x)
    torch._dynamo.reset()
    fused.train()
    code = torch._dynamo.explain(fused)(x).graphs[0].code
    assert "addmm" not in code  # the out-of-place form
    if not dropout:  # per layer one GEMM of x by [A; V_Sᵀ] and one by [s·B, U_S diag(δ)]: 2 layers, 4 GEMMs
        assert code.count("torch.mm(") == 4
    torch._dynamo.reset()
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    y1, g1 = run(compiled, x)
    torch._dynamo.reset()
    g1 = {k.removeprefix("_orig_mod."): v for k, v in g1.items()}
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    assert g0.keys() == g1.keys() and (name != "lora_dash" or any(DELTA in k for k in g0))
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-11, atol=1e-12, msg=k)
