"""The CEM maximiser of Transformer²'s few-shot adaptation: finds known optima in [0,1]^K, stays in its box, breaks
ties by the second score only where scores tie, and is deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.adaptation.cem import CEMSettings, cem_maximize


def test_finds_a_known_interior_optimum_with_the_paper_settings() -> None:
    """A smooth function of α with arg-max a* inside [0,1]^3, from the paper's start (mean 1/K, std 0.5)."""
    target = np.array([0.2, 0.7, 0.9])
    weights = np.array([1.0, 3.0, 0.5])

    def f(a: np.ndarray) -> float:
        return float(-np.sum(weights * (a - target) ** 2))

    res = cem_maximize(f, 3, CEMSettings(), init_mean=np.full(3, 1 / 3))
    assert np.abs(res.x - target).max() < 0.02, res.x
    assert res.score > -1e-3
    assert res.evaluations == 32 * 50 and len(res.history) == 50
    assert res.history[-1]["best_score"] == res.score
    assert max(res.history[-1]["next_std"]) < 0.05  # the distribution has collapsed onto the optimum


def test_optimum_on_the_boundary_is_reached_through_clipping() -> None:
    """arg-max at a corner of the box (α_1 = 1, α_2 = 0): samples clipped to the bounds hit it exactly."""
    res = cem_maximize(lambda a: float(a[0] - a[1]), 2, CEMSettings(population=16, iterations=20, seed=3),
                       init_mean=[0.5, 0.5])
    np.testing.assert_allclose(res.x, [1.0, 0.0])
    assert res.score == 1.0


def test_every_candidate_lies_in_the_box_per_dimension_bounds_too() -> None:
    seen: list[np.ndarray] = []

    def f(a: np.ndarray) -> float:
        seen.append(a.copy())
        return float(np.sum(a))

    low, high = np.array([0.0, -1.0, 0.25]), np.array([1.0, 0.5, 0.3])
    res = cem_maximize(f, 3, CEMSettings(population=8, iterations=5, init_std=10.0, seed=1), low=low, high=high,
                       init_mean=[5.0, 5.0, 5.0])  # a mean outside the box is clipped into it
    pts = np.stack(seen)
    assert pts.shape == (40, 3)
    assert np.all(pts >= low) and np.all(pts <= high)
    assert np.any(pts == low) and np.any(pts == high)  # a wide Gaussian is clipped, not resampled
    np.testing.assert_allclose(res.x, high)


def test_ties_at_the_top_are_broken_by_the_second_score_only_where_scores_tie() -> None:
    """A plateau objective (the accuracy on a few shots is coarse): among candidates at the best score the one with
    the highest tie-breaker (e.g. gold log-likelihood) wins; the tie-breaker is never asked about lower scores."""
    evaluated: list[tuple[np.ndarray, float]] = []
    asked: list[np.ndarray] = []

    def coarse(a: np.ndarray) -> float:
        s = float(np.floor(4 * (1 - abs(a[0] - 0.5))) / 4)  # 4 levels; a wide plateau around 0.5
        evaluated.append((a.copy(), s))
        return s

    def tie(a: np.ndarray) -> float:
        asked.append(a.copy())
        return float(-abs(a[1] - 0.8))  # prefers α_2 near 0.8 among the tied

    res = cem_maximize(coarse, 2, CEMSettings(population=10, iterations=4, seed=0), tie_breaker=tie)
    top = max(s for _, s in evaluated)
    assert res.score == top
    assert all(coarse(a) == top for a in asked)  # only tied-at-top candidates were ever tie-broken
    assert res.tie == pytest.approx(max(-abs(a[1] - 0.8) for a in asked))
    assert res.tie_evaluations == len(asked) >= 2


def test_without_a_tie_breaker_the_earlier_best_is_kept() -> None:
    """Equal scores never replace the best so far (the carried member 0 ranks first among equals)."""
    res = cem_maximize(lambda a: 1.0, 2, CEMSettings(population=4, iterations=3, seed=5), init_mean=[0.3, 0.3])
    first_population = np.clip(np.array([0.3, 0.3]) + 0.5 * np.random.default_rng(5).standard_normal((4, 2)), 0, 1)
    np.testing.assert_allclose(res.x, first_population[0])
    assert res.tie is None and res.tie_evaluations == 0


def test_seeded_and_deterministic() -> None:
    def f(a: np.ndarray) -> float:
        return float(-np.sum((a - 0.3) ** 2))

    a = cem_maximize(f, 4, CEMSettings(population=8, iterations=6, seed=11))
    b = cem_maximize(f, 4, CEMSettings(population=8, iterations=6, seed=11))
    c = cem_maximize(f, 4, CEMSettings(population=8, iterations=6, seed=12))
    np.testing.assert_array_equal(a.x, b.x)
    assert a.history == b.history
    assert not np.array_equal(a.x, c.x)


def test_settings_are_checked() -> None:
    assert CEMSettings().n_elites == 6  # int(0.2 * 32), the official count
    assert CEMSettings(population=4, elite_ratio=0.1).n_elites == 1
    for bad in ({"population": 1}, {"elite_ratio": 0.0}, {"elite_ratio": 1.5}, {"iterations": 0},
                {"init_std": 0.0}, {"min_std": -1.0}):
        with pytest.raises(ValueError):
            CEMSettings(**bad)
    with pytest.raises(ValueError, match="low < high"):
        cem_maximize(lambda a: 0.0, 2, low=[0, 1], high=[1, 1])
    with pytest.raises(ValueError, match="NaN"):
        cem_maximize(lambda a: float("nan"), 1, CEMSettings(population=2, iterations=1))
