"""Paired differences over seeds, for the claims a table supports or not.

A claim "method A beats B" is read from the per-seed differences d_k = A_k − B_k (same seed: same carve-out, same
initialisation of what the seed decides): mean d̄, sample standard deviation s, and the two-sided Student-t interval
d̄ ± t_{0.975, n−1} · s / √n. With n = 3 seeds t_{0.975, 2} = 4.30, so only a large, consistent difference excludes 0.
The verdict is ``supported`` when the interval lies on the claimed side of 0, ``contradicted`` when it lies on the
other side, else ``inconclusive`` (also for fewer than 2 seeds, where no interval exists).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Paired:
    """Per-seed differences ``diffs`` (in seed order ``seeds``) and their mean and interval (None below 2 seeds)."""

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    mean: float | None
    low: float | None
    high: float | None
    level: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    def verdict(self, higher_is_better: bool = True) -> str:
        """``supported`` / ``contradicted`` / ``inconclusive`` for the claim "the first beats the second"."""
        if self.low is None or self.high is None:
            return "inconclusive"
        better, worse = (self.low > 0, self.high < 0) if higher_is_better else (self.high < 0, self.low > 0)
        return "supported" if better else "contradicted" if worse else "inconclusive"

    @property
    def p_value(self) -> float | None:
        """Two-sided one-sample t-test of H0: E[d] = 0 on the per-seed differences (None below 2 seeds)."""
        if self.n < 2 or self.mean is None:
            return None
        sd = math.sqrt(math.fsum((d - self.mean) ** 2 for d in self.diffs) / (self.n - 1))
        if sd == 0.0:
            return 1.0 if self.mean == 0.0 else 0.0
        t = abs(self.mean) / (sd / math.sqrt(self.n))
        return float(2.0 * stats.t.sf(t, self.n - 1))

    def text(self, digits: int = 3) -> str:
        """``mean [low, high]`` (or the lone difference) with ``digits`` decimals."""
        if self.mean is None:
            return "n/a"
        if self.low is None or self.high is None:
            return f"{self.mean:+.{digits}f} (1 seed, no interval)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired(first: Mapping[int, float], second: Mapping[int, float], level: float = 0.95) -> Paired:
    """The paired differences first − second over the seeds both have, with a ``level`` Student-t interval."""
    seeds = tuple(sorted(set(first) & set(second)))
    diffs = tuple(float(first[s]) - float(second[s]) for s in seeds)
    return from_diffs(diffs, seeds, level)


def from_diffs(diffs: Sequence[float], seeds: Sequence[int] = (), level: float = 0.95) -> Paired:
    """Mean and two-sided Student-t interval of ``diffs``."""
    n = len(diffs)
    if n == 0:
        return Paired(tuple(seeds), (), None, None, None, level)
    mean = math.fsum(diffs) / n
    if n < 2:
        return Paired(tuple(seeds), tuple(diffs), mean, None, None, level)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Paired(tuple(seeds), tuple(diffs), mean, mean - half, mean + half, level)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries stay None and do not count): the k-th
    smallest of m becomes max over j <= k of min(1, (m − j + 1) · p_(j)). Controls the family-wise error rate."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
