"""experiments.report.paired: the Student-t interval of paired differences, against textbook numbers."""

from __future__ import annotations

import pytest

from experiments.report.paired import from_diffs, holm, paired


def test_interval_matches_a_hand_computation_with_the_tabulated_t() -> None:
    # d = (1, 2, 6): mean 3, s = sqrt(((−2)² + (−1)² + 3²) / 2) = sqrt(7); t_{0.975, 2} = 4.302653 (tables).
    p = from_diffs([1.0, 2.0, 6.0])
    half = 4.302652729911275 * 7 ** 0.5 / 3 ** 0.5
    assert p.mean == pytest.approx(3.0) and p.low == pytest.approx(3 - half) and p.high == pytest.approx(3 + half)
    assert p.verdict() == "inconclusive"


def test_pairs_by_seed_and_reads_the_claimed_direction() -> None:
    ours = {0: 0.50, 1: 0.52, 2: 0.51, 3: 0.9}
    base = {0: 0.40, 1: 0.41, 2: 0.40}
    p = paired(ours, base)
    assert p.seeds == (0, 1, 2) and p.diffs == pytest.approx((0.10, 0.11, 0.11))
    assert p.verdict(higher_is_better=True) == "supported" and p.verdict(higher_is_better=False) == "contradicted"
    one = paired({0: 1.0}, {0: 0.5})
    assert one.low is None and one.verdict() == "inconclusive" and "1 seed" in one.text()


def test_p_value_matches_the_closed_form_t_distribution_with_two_degrees_of_freedom() -> None:
    # With 2 degrees of freedom F(t) = 1/2 + t / (2 sqrt(2 + t²)), so the two-sided p = 1 − t / sqrt(2 + t²).
    d = [1.0, 2.0, 6.0]
    t = 3.0 / (7 ** 0.5 / 3 ** 0.5)
    assert from_diffs(d).p_value == pytest.approx(1 - t / (2 + t * t) ** 0.5, rel=1e-9)
    assert from_diffs([0.5]).p_value is None and from_diffs([0.2, 0.2]).p_value == 0.0


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 of m = 3: 3·0.01 = 0.03; max(0.03, 2·0.03) = 0.06; max(0.06, 1·0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
