"""A generic, seeded cross-entropy-method (CEM) maximiser over a box.

Transformer² (Sun, Cetin, Tang 2025, ICLR 2025, §3.2 "few-shot adaptation") searches the mixture weights α of
z' = Σ_k α_k z_k with CEM: a diagonal Gaussian over α, a population drawn from it and clipped to the box, the mean
and standard deviation refitted to the elite members. The defaults are the paper's and the official code's
(github:SakanaAI/self-adaptive-llms, commit 03a41ae, ``optim_modules.py`` ``CEM`` / ``RandomShooting`` and
``cfgs/optimization/cem.yaml``): population 32, elite ratio 0.2 (``int(0.2·32)`` = 6 elites), α ∈ [0, 1], initial
standard deviation (high − low)/2 = 0.5, the best member so far re-entered as member 0 of every population
(``re_eval_best``), the elites' unbiased standard deviation (``torch.std``), ties at the best score broken by a
second score (the official: a log-likelihood, ``use_loglikelihood_for_ties``). The initial mean (1/K for K experts)
is the caller's.

Nothing here knows about models: ``objective(x) -> float`` scores one candidate (higher is better) and
``tie_breaker(x) -> float`` (higher is better) is called only for candidates that tie at the best score, so an
expensive second score (a log-likelihood pass) costs nothing when scores differ. Deterministic for a seed (numpy's
``default_rng``), given a deterministic objective.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Objective = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class CEMSettings:
    """CEM hyper-parameters (defaults: Transformer²'s, see the module doc).

    ``population``: candidates per iteration; ``elite_ratio``: share of the population refitted to (at least one
    elite); ``iterations``: populations drawn; ``low`` / ``high``: the box (scalars, or one bound per dimension given
    to :func:`cem_maximize`); ``init_std``: initial standard deviation (None: (high − low)/2, the official value);
    ``min_std``: floor of the refitted standard deviation (0: may collapse, as the official); ``carry_best``: the best
    candidate so far is member 0 of every population (official ``re_eval_best``); ``seed``: numpy generator seed.
    """

    population: int = 32
    elite_ratio: float = 0.2
    iterations: int = 50
    low: float = 0.0
    high: float = 1.0
    init_std: float | None = None
    min_std: float = 0.0
    carry_best: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError(f"CEM population={self.population} must be >= 2.")
        if not 0.0 < self.elite_ratio <= 1.0:
            raise ValueError(f"CEM elite_ratio={self.elite_ratio} must be in (0, 1].")
        if self.iterations < 1:
            raise ValueError(f"CEM iterations={self.iterations} must be >= 1.")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"CEM init_std={self.init_std} must be > 0 (or null for (high - low)/2).")
        if self.min_std < 0:
            raise ValueError(f"CEM min_std={self.min_std} must be >= 0.")

    @property
    def n_elites(self) -> int:
        """Elites per iteration: ``int(elite_ratio · population)`` (the official count), at least 1."""
        return max(1, int(self.elite_ratio * self.population))


@dataclass
class CEMResult:
    """The best candidate found and the search's record.

    ``x``: the best candidate; ``score``: its objective; ``tie``: its tie-breaker value (None when never needed or no
    tie-breaker); ``history``: per iteration the distribution (mean, std) it was drawn from and the population's
    scores; ``evaluations``: objective calls; ``tie_evaluations``: tie-breaker calls; ``seconds``: wall time;
    ``evaluated``: every (candidate, score) when ``keep_evaluations``.
    """

    x: np.ndarray
    score: float
    tie: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: int = 0
    tie_evaluations: int = 0
    seconds: float = 0.0
    evaluated: list[tuple[np.ndarray, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (``evaluated`` left out)."""
        return {"x": self.x.tolist(), "score": self.score, "tie": self.tie, "evaluations": self.evaluations,
                "tie_evaluations": self.tie_evaluations, "seconds": self.seconds, "history": self.history}


def _bounds(value: float | Sequence[float] | np.ndarray, dim: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (dim,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"CEM {name} must be finite.")
    return arr


def cem_maximize(objective: Objective, dim: int, settings: CEMSettings | None = None, *,
                 init_mean: float | Sequence[float] | np.ndarray | None = None,
                 low: float | Sequence[float] | np.ndarray | None = None,
                 high: float | Sequence[float] | np.ndarray | None = None,
                 tie_breaker: Objective | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None,
                 keep_evaluations: bool = False) -> CEMResult:
    """Maximise ``objective`` over the box [low, high]^dim with CEM; returns the best candidate ever evaluated.

    Each iteration draws ``population`` candidates x ~ N(μ, diag σ²), clipped to the box (member 0 is the best so far
    when ``carry_best``), scores each with ``objective``, refits μ and σ to the ``n_elites`` best (σ: unbiased standard
    deviation, floored at ``min_std``; 0 with a single elite). Ranking: score, descending; among members tied at the
    population's top score, ``tie_breaker`` (descending); otherwise the lower index first (deterministic). The best
    candidate overall changes only for a strictly higher score, or an equal score with a strictly higher
    tie-breaker value. ``init_mean`` (default: the box's midpoint) is clipped to the box. ``low`` / ``high`` default
    to ``settings``'; they may be per-dimension arrays. ``callback`` receives each iteration's history entry.
    """
    settings = settings or CEMSettings()
    if dim < 1:
        raise ValueError(f"CEM needs dim >= 1, got {dim}.")
    lo = _bounds(settings.low if low is None else low, dim, "low")
    hi = _bounds(settings.high if high is None else high, dim, "high")
    if not np.all(lo < hi):
        raise ValueError(f"CEM bounds need low < high in every dimension (low={lo.tolist()}, high={hi.tolist()}).")
    mean = (lo + hi) / 2 if init_mean is None else _bounds(init_mean, dim, "init_mean")
    mean = np.clip(mean, lo, hi)
    std = (hi - lo) / 2 if settings.init_std is None else np.full(dim, float(settings.init_std))
    rng = np.random.default_rng(settings.seed)
    t0 = time.perf_counter()

    best_x: np.ndarray | None = None
    best_score = -np.inf
    best_tie: float | None = None
    result = CEMResult(x=mean.copy(), score=-np.inf, tie=None)

    def tie_of(x: np.ndarray) -> float:
        result.tie_evaluations += 1
        return float(tie_breaker(x)) if tie_breaker is not None else 0.0

    for it in range(settings.iterations):
        pop = np.clip(mean + std * rng.standard_normal((settings.population, dim)), lo, hi)
        carried = bool(settings.carry_best and best_x is not None)
        if carried:
            pop[0] = best_x
        scores = np.empty(settings.population)
        for i in range(settings.population):
            s = float(objective(pop[i].copy()))
            if np.isnan(s):
                raise ValueError(f"CEM objective returned NaN for candidate {pop[i].tolist()}.")
            scores[i] = s
            result.evaluations += 1
            if keep_evaluations:
                result.evaluated.append((pop[i].copy(), s))
        top = float(scores.max())
        tied = np.flatnonzero(scores == top)
        ties = np.full(settings.population, -np.inf)
        # The tie-breaker runs only where it decides something: several members at the top score, or a member
        # equal to the best so far. The best so far keeps its value (computed once, when first needed).
        equals_best = best_x is not None and top == best_score
        if tie_breaker is not None and (len(tied) > 1 or equals_best):
            if equals_best and best_tie is None:
                best_tie = tie_of(best_x)
            for i in tied:
                ties[i] = best_tie if (carried and i == 0) else tie_of(pop[i])
        order = np.lexsort((np.arange(settings.population), -ties, -scores))
        lead = int(order[0])
        lead_tie = None if np.isneginf(ties[lead]) else float(ties[lead])
        if top > best_score:
            best_x, best_score, best_tie = pop[lead].copy(), top, lead_tie
        elif (equals_best and not (carried and lead == 0) and lead_tie is not None and best_tie is not None
              and lead_tie > best_tie):
            best_x, best_tie = pop[lead].copy(), lead_tie
        elites = pop[order[:settings.n_elites]]
        mean = elites.mean(axis=0)
        std = elites.std(axis=0, ddof=1) if len(elites) > 1 else np.zeros(dim)
        std = np.maximum(std, settings.min_std)
        entry = {"iteration": it, "pop_max": top, "pop_mean": float(scores.mean()), "n_at_max": int(len(tied)),
                 "best_score": best_score, "best_tie": best_tie, "next_mean": mean.tolist(), "next_std": std.tolist()}
        result.history.append(entry)
        if callback is not None:
            callback(entry)
    assert best_x is not None
    result.x, result.score, result.tie = best_x, best_score, best_tie
    result.seconds = time.perf_counter() - t0
    return result


__all__ = ["CEMResult", "CEMSettings", "Objective", "cem_maximize"]
