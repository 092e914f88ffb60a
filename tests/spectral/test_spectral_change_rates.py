"""Change rates δ_i = |u_iᵀ ΔW v_i| / σ_i against independent float64 references (numpy SVD + explicit loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectune.spectral import (
    SVD,
    change_rates,
    change_rates_lowrank,
    coordinate_changes,
    coordinate_changes_lowrank,
    default_tol,
    svd,
    top_directions,
)

SHAPES = [(40, 40), (60, 25), (25, 60)]  # square, tall, wide


def reference(weight: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Δσ, δ) by numpy's SVD and one u_i @ ΔW @ v_i per direction: written unlike the code under test."""
    u, s, vt = np.linalg.svd(weight.astype(np.float64), full_matrices=False)
    changes = np.array([u[:, i] @ delta @ vt[i, :] for i in range(len(s))])
    rates = np.array([abs(changes[i]) / s[i] for i in range(len(s))])
    return changes, rates


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def real_weights() -> dict[str, torch.Tensor]:
    """Layer-0 attention query weights of the embedded models (real pretrained values)."""
    from spectune.models import load_model_and_tokenizer

    smol, _ = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=1)
    mini, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    return {
        "smollm2.q_proj": smol.model.layers[0].self_attn.q_proj.weight.detach().clone(),
        "minilm.query": mini.bert.encoder.layer[0].attention.self.query.weight.detach().clone(),
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_rates_match_numpy_loop_reference(shape: tuple[int, int]) -> None:
    w, dw = _rand(*shape, seed=0), 0.1 * _rand(*shape, seed=1)
    ref_changes, ref_rates = reference(w.numpy(), dw.numpy())
    changes = coordinate_changes(w, dw)
    rates = change_rates(w, dw)
    assert changes.dtype == rates.dtype == torch.float64 and rates.shape == (min(shape),)
    np.testing.assert_allclose(changes.numpy(), ref_changes, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rates.numpy(), ref_rates, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("r", [1, 4, 16])
def test_lowrank_path_equals_dense_product(shape: tuple[int, int], r: int) -> None:
    w = _rand(*shape, seed=2)
    b, a, scale = _rand(shape[0], r, seed=3), _rand(r, shape[1], seed=4), 2.0 / r
    dense = change_rates(w, scale * b @ a)
    low = change_rates_lowrank(w, b, a, scale)
    torch.testing.assert_close(low, dense, rtol=0, atol=1e-10)
    torch.testing.assert_close(coordinate_changes_lowrank(w, b, a, scale), coordinate_changes(w, scale * b @ a),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["smollm2.q_proj", "minilm.query"])
def test_real_weight_lowrank_dense_and_reference_agree(real_weights: dict[str, torch.Tensor], name: str) -> None:
    w = real_weights[name]
    d_out, d_in = w.shape
    b, a, scale = 0.02 * _rand(d_out, 8, seed=5), 0.02 * _rand(8, d_in, seed=6), 2.0
    dw = scale * b @ a
    factors = svd(w, torch.float64)
    dense = coordinate_changes(w, dw, svd=factors)
    low = coordinate_changes_lowrank(w, b, a, scale, svd=factors)
    torch.testing.assert_close(low, dense, rtol=0, atol=1e-10)
    torch.testing.assert_close(change_rates_lowrank(w, b, a, scale, svd=factors),
                               change_rates(w, dw, svd=factors), rtol=1e-10, atol=1e-10)
    ref_changes, ref_rates = reference(w.double().numpy(), dw.numpy())
    np.testing.assert_allclose(dense.numpy(), ref_changes, rtol=1e-7, atol=1e-9)
    rates = change_rates_lowrank(w, b, a, scale, svd=factors)
    np.testing.assert_allclose(rates.numpy(), ref_rates, rtol=1e-6, atol=1e-8)
    assert set(top_directions(rates, 8).tolist()) == set(np.argsort(-ref_rates)[:8].tolist())


@pytest.mark.parametrize("shape", SHAPES)
def test_synthetic_update_on_chosen_directions_gives_exactly_those_directions(shape: tuple[int, int]) -> None:
    """ΔW = Σ_{i∈S} c_i u_i v_iᵀ with c_i = ±target_i·σ_i: rates are the targets, zero elsewhere."""
    w = _rand(*shape, seed=7)
    u, s, vt = np.linalg.svd(w.numpy(), full_matrices=False)  # built from numpy's SVD, checked with torch's
    targets = {20: 4.0, 3: 3.0, 12: 2.0, 7: 1.0}  # index → rate, deliberately not in σ order
    signs = {20: 1.0, 3: -1.0, 12: 1.0, 7: -1.0}
    dw = sum(signs[i] * targets[i] * s[i] * np.outer(u[:, i], vt[i]) for i in targets)
    rates = change_rates(w, torch.from_numpy(dw))
    assert top_directions(rates, 4).tolist() == [20, 3, 12, 7]
    for i, target in targets.items():
        assert rates[i].item() == pytest.approx(target, rel=1e-10)
    others = [i for i in range(len(s)) if i not in targets]
    assert rates[others].abs().max().item() < 1e-10
    changes = coordinate_changes(w, torch.from_numpy(dw))
    assert changes[3].item() == pytest.approx(-3.0 * s[3], rel=1e-10)  # the sign survives in Δσ
    assert top_directions(changes.abs(), 1).item() != 20  # |Δσ| alone ranks differently: the 1/σ_i matters
    # the same update as a LoRA pair B A (B = U_S diag(c) / scale, A = V_Sᵀ)
    idx = sorted(targets)
    scale = 0.5
    b = torch.from_numpy(u[:, idx] * np.array([signs[i] * targets[i] * s[i] for i in idx]) / scale)
    a = torch.from_numpy(vt[idx])
    low = change_rates_lowrank(w, b, a, scale)
    assert top_directions(low, 4).tolist() == [20, 3, 12, 7]
    torch.testing.assert_close(low, rates, rtol=0, atol=1e-10)


def test_rates_invariant_to_flipping_singular_vector_pairs() -> None:
    w, dw = _rand(30, 20, seed=8), _rand(30, 20, seed=9)
    f = svd(w, torch.float64)
    flip = torch.ones(20, dtype=torch.float64)
    flip[[0, 4, 9, 19]] = -1.0
    flipped = SVD(f.U * flip, f.S, f.Vh * flip[:, None])
    torch.testing.assert_close(flipped.reconstruct(), w)  # still an SVD of W
    torch.testing.assert_close(coordinate_changes(w, dw, svd=flipped), coordinate_changes(w, dw, svd=f),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(change_rates(w, dw, svd=flipped), change_rates(w, dw, svd=f), rtol=0, atol=1e-12)
    u_only = SVD(f.U * flip, f.S, f.Vh)  # flipping u_i alone flips Δσ_i but not δ_i
    torch.testing.assert_close(coordinate_changes(w, dw, svd=u_only), coordinate_changes(w, dw, svd=f) * flip)
    torch.testing.assert_close(change_rates(w, dw, svd=u_only), change_rates(w, dw, svd=f))


def test_given_svd_is_the_one_used() -> None:
    w, other, dw = _rand(12, 9, seed=10), _rand(12, 9, seed=11), _rand(12, 9, seed=12)
    _, ref_rates = reference(other.numpy(), dw.numpy())
    got = change_rates(w, dw, svd=svd(other, torch.float64))
    np.testing.assert_allclose(got.numpy(), ref_rates, rtol=1e-9)
    assert not torch.allclose(got, change_rates(w, dw))


def test_float32_path_agrees_with_float64_on_a_well_conditioned_matrix() -> None:
    w = _rand(50, 30, seed=13) + 3.0 * torch.eye(50, 30, dtype=torch.float64)
    b, a = _rand(50, 4, seed=14), _rand(4, 30, seed=15)
    r32 = change_rates_lowrank(w.float(), b.float(), a.float(), 0.5, dtype=torch.float32)
    r64 = change_rates_lowrank(w, b, a, 0.5)
    assert r32.dtype == torch.float32
    torch.testing.assert_close(r32.double(), r64, rtol=1e-3, atol=1e-4)
    # a cached fp32 SVD used at fp64 arithmetic: the dtype of the result follows ``dtype``
    assert change_rates_lowrank(w, b, a, 0.5, svd=svd(w, torch.float32)).dtype == torch.float64


def test_tiny_singular_values_give_nan_not_a_division_by_zero() -> None:
    w = _rand(10, 3, seed=16) @ _rand(3, 8, seed=17)  # rank 3: σ_4..σ_8 are round-off (~1e-15)
    dw = _rand(10, 8, seed=18)
    f = svd(w, torch.float64)
    assert default_tol(f) == pytest.approx(10 * np.finfo(np.float64).eps * f.S[0].item())
    rates = change_rates(w, dw, svd=f)
    assert torch.isfinite(rates[:3]).all() and torch.isnan(rates[3:]).all()
    assert torch.isnan(change_rates_lowrank(w, dw[:, :2], torch.eye(2, 8, dtype=torch.float64), 1.0)[3:]).all()
    top = top_directions(rates, 5).tolist()
    assert sorted(top[:3]) == [0, 1, 2] and top[3:] == [3, 4]  # undefined rates rank last, in σ order
    # exact zeros stay NaN even with tol=0; with tol=0 every σ_i > 0 is divided
    diag = torch.diag(torch.tensor([3.0, 2.0, 0.0], dtype=torch.float64))
    delta = torch.ones(3, 3, dtype=torch.float64)
    r0 = change_rates(diag, delta, tol=0.0)
    assert r0[:2].tolist() == pytest.approx([1 / 3, 1 / 2]) and torch.isnan(r0[2])
    assert torch.isnan(change_rates(diag, delta, tol=2.5)[1:]).all()  # an explicit tolerance masks σ ≤ 2.5
    with pytest.raises(ValueError, match="tol"):
        change_rates(diag, delta, tol=-1.0)


def test_top_directions_orders_by_rate_with_nan_last_and_stable_ties() -> None:
    rates = torch.tensor([0.1, 0.5, float("nan"), 0.5, 0.3])
    assert top_directions(rates, 3).tolist() == [1, 3, 4]
    assert top_directions(rates, 5).tolist() == [1, 3, 4, 0, 2]
    assert top_directions(rates, 0).tolist() == []
    assert top_directions(rates, 2).dtype == torch.long
    ties = torch.tensor([1.0, 2.0] * 500)
    assert top_directions(ties, 1000).tolist() == list(range(1, 1000, 2)) + list(range(0, 1000, 2))
    for bad in (6, -1):
        with pytest.raises(ValueError, match="k="):
            top_directions(rates, bad)
    with pytest.raises(ValueError, match="1-D"):
        top_directions(rates[None], 1)


def test_shape_and_dtype_errors_are_explicit() -> None:
    w = _rand(6, 4, seed=19)
    with pytest.raises(ValueError, match="delta"):
        change_rates(w, w.T)
    with pytest.raises(ValueError, match="Expected B"):
        change_rates_lowrank(w, _rand(6, 2, seed=0), _rand(3, 4, seed=0), 1.0)
    with pytest.raises(ValueError, match="SVD is of"):
        change_rates(w, w, svd=svd(w.T))
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        change_rates(w, w, dtype=torch.float16)
    with pytest.raises(ValueError, match="2-D"):
        change_rates(w[0], w[0])
