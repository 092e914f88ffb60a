"""Rank measures on matrices whose answers are known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spectune.spectral import rank_stats


def _outer_sum(m: int, n: int, r: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return sum(torch.outer(torch.randn(m, generator=g, dtype=torch.float64),
                           torch.randn(n, generator=g, dtype=torch.float64)) for _ in range(r))


@pytest.mark.parametrize(("m", "n", "r"), [(30, 20, 5), (20, 30, 1), (16, 16, 16)])
def test_numerical_rank_of_a_sum_of_r_outer_products(m: int, n: int, r: int) -> None:
    stats = rank_stats(_outer_sum(m, n, r, seed=r))
    assert stats["numerical_rank"] == r
    assert stats["shape"] == [m, n] and len(stats["singular_values"]) == min(m, n)
    assert 1.0 <= stats["stable_rank"] <= r + 1e-9 and 1.0 <= stats["effective_rank"] <= r + 1e-9


def test_identity_has_stable_and_effective_rank_n() -> None:
    stats = rank_stats(torch.eye(7, dtype=torch.float64))
    assert stats["numerical_rank"] == 7
    assert stats["stable_rank"] == pytest.approx(7.0, rel=1e-12)
    assert stats["effective_rank"] == pytest.approx(7.0, rel=1e-12)
    assert stats["frobenius_norm"] == pytest.approx(math.sqrt(7)) and stats["spectral_norm"] == pytest.approx(1.0)
    assert stats["singular_values"] == pytest.approx([1.0] * 7)


def test_rank_one_matrix() -> None:
    u, v = torch.arange(1.0, 6.0, dtype=torch.float64), torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    stats = rank_stats(torch.outer(u, v))
    assert stats["numerical_rank"] == 1
    assert stats["stable_rank"] == pytest.approx(1.0, abs=1e-12)
    assert stats["effective_rank"] == pytest.approx(1.0, abs=1e-12)
    assert stats["spectral_norm"] == pytest.approx(float(u.norm() * v.norm()))


def test_hand_computed_diagonal() -> None:
    stats = rank_stats(np.diag([4.0, 3.0]))
    assert stats["stable_rank"] == pytest.approx(25.0 / 16.0)  # ‖M‖_F² = 25, ‖M‖_2² = 16
    p = np.array([4.0, 3.0]) / 7.0
    assert stats["effective_rank"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert stats["frobenius_norm"] == pytest.approx(5.0) and stats["spectral_norm"] == pytest.approx(4.0)


def test_zero_matrix_is_rank_zero_everywhere() -> None:
    stats = rank_stats(torch.zeros(5, 3))
    assert stats["numerical_rank"] == 0 and stats["stable_rank"] == 0.0 and stats["effective_rank"] == 0.0
    assert stats["frobenius_norm"] == 0.0 and stats["spectral_norm"] == 0.0 and stats["tol"] == 0.0
    assert stats["singular_values"] == [0.0, 0.0, 0.0]


def test_default_tolerance_follows_numpy_and_the_input_dtype() -> None:
    m64 = np.diag([1.0, 1e-6, 1e-7, 1e-17])
    assert rank_stats(m64)["numerical_rank"] == np.linalg.matrix_rank(m64) == 3
    m32 = m64.astype(np.float32)  # eps32 · 4 ≈ 4.8e-7: 1e-7 is round-off in fp32
    assert rank_stats(m32)["numerical_rank"] == np.linalg.matrix_rank(m32) == 2
    assert rank_stats(torch.from_numpy(m32))["tol"] == pytest.approx(4 * np.finfo(np.float32).eps)
    noisy = _outer_sum(30, 20, 5, seed=3) + 1e-9 * _outer_sum(30, 20, 20, seed=4)
    assert rank_stats(noisy)["numerical_rank"] == np.linalg.matrix_rank(noisy.numpy()) == 20
    assert rank_stats(noisy, tol=1e-4)["numerical_rank"] == 5
    assert rank_stats(np.eye(3, dtype=np.int64))["numerical_rank"] == 3


def test_result_is_json_ready_and_bad_input_raises() -> None:
    json.dumps(rank_stats(torch.randn(6, 4)))
    with pytest.raises(ValueError, match="2-D"):
        rank_stats(torch.ones(3))
    with pytest.raises(ValueError, match="tol"):
        rank_stats(torch.ones(2, 2), tol=-1.0)
