"""The accumulated-update rank tracker against dense float64 numpy references, for lora, plora and full."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectune.methods import build_method
from spectune.models import load_model_and_tokenizer
from spectune.training.rank_tracking import UpdateRankTracker


class _State:
    global_step = 0


def _randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _reference_rank(delta: np.ndarray) -> int:
    """numpy's rank at the fp32 tolerance (W is stored in fp32, so W_now - W_0 carries fp32 round-off)."""
    return int(np.linalg.matrix_rank(delta, tol=np.linalg.norm(delta, 2) * max(delta.shape) * np.finfo(np.float32).eps))


@pytest.mark.parametrize("name", ["lora", "plora"])
def test_tracker_ranks_equal_dense_references(name):
    method = build_method(name, r=2, target_modules=["query"], dropout=0.0)
    base, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    w0 = {n: m.weight.detach().double().numpy().copy() for n, m in base.named_modules() if n.endswith("query")}
    model = method.attach(base, "SEQ_CLS")
    events = []
    tracker = UpdateRankTracker(method, every=1, log_event=lambda kind, **kw: events.append((kind, kw)))
    stages = 3 if name == "plora" else 0
    for k in range(stages):
        _randomise(model, k)
        method.unload(model, step=k + 1)
    _randomise(model, 99)
    measured = tracker.measure(model)
    assert len(measured) == 6
    for n, layer in ((n.removeprefix("base_model.model."), m) for n, m in model.named_modules()
                     if n.endswith("query") and hasattr(m, "lora_A")):
        delta = layer.get_base_layer().weight.detach().double().numpy() - w0[n] + float(layer.scaling["default"]) * (
            layer.lora_B["default"].weight.detach().double().numpy()
            @ layer.lora_A["default"].weight.detach().double().numpy())
        assert measured[n]["numerical_rank"] == _reference_rank(delta) == 2 * (stages + 1)
        np.testing.assert_allclose(measured[n]["frobenius_norm"], np.linalg.norm(delta), rtol=1e-5)
    state = _State()
    state.global_step = 1
    tracker.on_step_end(None, state, None, model=model)
    kind, rec = events[-1]
    assert kind == "update_rank" and rec["mean_numerical_rank"] == 2 * (stages + 1)


def test_tracker_full_finetuning_uses_the_dense_difference():
    method = build_method("full")
    model, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    tracker = UpdateRankTracker(method, every=5, log_event=lambda *a, **k: None, target_modules=["value"])
    tracker.on_train_begin(None, _State(), None, model=model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, m in model.named_modules():
            if n.endswith("value"):  # a rank-3 update
                m.weight.add_(torch.randn(384, 3, generator=g) @ torch.randn(3, 384, generator=g) * 1e-2)
    measured = tracker.measure(model)
    assert len(measured) == 6 and all(v["numerical_rank"] == 3 for v in measured.values())


def test_lora_dash_update_includes_the_dash_directions(tmp_path, monkeypatch):
    """LoRA-Dash's ΔW = sBA + U_S diag(δ) V_Sᵀ: rank r + s and its norm, against float64 numpy from the buffers."""
    from spectune.methods.lora_dash_layer import DELTA, U_S, V_S, dash_layers

    monkeypatch.setenv("SPECTUNE_CACHE", str(tmp_path))
    method = build_method("lora_dash", r=2, s=2, t=1, target_modules=["query"], dropout=0.0, svd_cache=False)
    base, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    model = method.attach(base, "SEQ_CLS")
    _randomise(model, 0)
    method.switch(model)
    _randomise(model, 1)  # δ too (its name holds "lora_")
    measured = UpdateRankTracker(method, every=1, log_event=lambda *a, **k: None).measure(model)
    layers = dash_layers(model)
    assert len(measured) == len(layers) == 6
    for name, layer in layers:
        b = layer.lora_B["default"].weight.detach().double().numpy() * float(layer.scaling["default"])
        a = layer.lora_A["default"].weight.detach().double().numpy()
        u, v = (getattr(layer, k)["default"].detach().double().numpy() for k in (U_S, V_S))
        d = getattr(layer, DELTA)["default"].detach().double().numpy()
        delta = b @ a + (u * d) @ v.T
        rec = measured[name.removeprefix("base_model.model.")]
        assert rec["numerical_rank"] == _reference_rank(delta) == 4
        np.testing.assert_allclose(rec["frobenius_norm"], np.linalg.norm(delta), rtol=1e-5)
