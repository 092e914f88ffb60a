"""Transformer²'s two-pass inference (Sun, Cetin, Tang 2025, ICLR 2025, §3.2), its three strategies, scored.

First pass: choose z' for the task's queries. Second pass: answer them with W' = U diag(σ ⊙ z') Vᵀ.

- ``prompt``: the base model classifies each query (:mod:`spectune.adaptation.classify`, the official prompt) into
  code / math / reasoning / other; the expert of that domain answers (z' = z_k); "other", and a domain without an
  expert, answers with the base weights.
- ``cls_expert``: the same, but the first pass runs with a classification expert's z (trained on the experts'
  training prompts only, :mod:`spectune.adaptation.cls_data`).
- ``few_shot``: z' = Σ_k α_k z_k (α per expert, or per expert and matrix), α found by CEM
  (:mod:`spectune.adaptation.cem`) maximising the accuracy on a few examples ("shots") of the target task drawn
  from its *train* split, ties broken by the gold answers' log-likelihood; then every test query is answered with
  that z'. The shots are never scored (test items equal to a shot are dropped and listed).

Scores: the task's official check (exact match, pass@1 for code) over the test items, gold bits per byte beside it
(the reference answer's likelihood under the weights that answered each item; informative where exact match is near
0, as for a 135M model). Timing (Table 3 of the paper): ``first_pass_seconds`` (classification generation, or the
CEM search for few-shot) and ``second_pass_seconds`` (answer generation, z switches included); checking and the
likelihood pass are timed apart. ``first_pass_share_of_total`` = first / (first + second);
``first_pass_vs_second`` = first / second, the percentage printed in the paper's Table 3 (e.g. MATH 42.64 s vs
321.19 s: 13%).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spectune.adaptation.cem import cem_maximize
from spectune.adaptation.classify import classification_prompts, domain_of
from spectune.adaptation.experts import AdaptError, Expert, ExpertModel, check_domains
from spectune.adaptation.settings import STRATEGIES, AdaptSettings, FewShotSettings
from spectune.data.records import Record
from spectune.data.t2_tasks import build_prompt, gold_continuation, t2_task
from spectune.evaluation.t2_scoring import Verdict, check_completions, generate_greedy


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _budget(task: str, value: int | None) -> int:
    return int(value) if value is not None else t2_task(task).max_new_tokens


@dataclass
class GroupScore:
    """One group of items answered under one z': completions, verdicts, per-item gold NLL (nats) and bytes, and
    the seconds of generation, checking and the likelihood pass."""

    completions: list[str]
    verdicts: list[Verdict]
    nll: list[float]
    n_tokens: list[int]
    n_bytes: list[int]
    generation_seconds: float
    check_seconds: float
    likelihood_seconds: float


def answer(model: Any, tokenizer: Any, records: Sequence[Record], settings: AdaptSettings,
           max_new_tokens: int | None = None, bits_per_byte: bool | None = None) -> GroupScore:
    """Answer ``records`` (one task) with the model's current weights: greedy generation, official checks, and the
    gold answers' likelihood when ``bits_per_byte``."""
    from spectune.evaluation.likelihood import score_gold

    records = list(records)
    if not records:
        return GroupScore([], [], [], [], [], 0.0, 0.0, 0.0)
    task = records[0].task
    prompts = [build_prompt(r, tokenizer) for r in records]
    _sync()
    t0 = time.perf_counter()
    budget = _budget(task, settings.max_new_tokens if max_new_tokens is None else max_new_tokens)
    completions = generate_greedy(model, tokenizer, prompts, max_new_tokens=budget, batch_size=settings.batch_size)
    _sync()
    t1 = time.perf_counter()
    verdicts = check_completions(records, completions, code_timeout=settings.code_timeout)
    t2 = time.perf_counter()
    nll: list[float] = []
    toks: list[int] = []
    use_bpb = settings.bits_per_byte if bits_per_byte is None else bits_per_byte
    golds = [gold_continuation(r) for r in records]
    if use_bpb:
        gold = score_gold(model, tokenizer, prompts, golds, batch_size=settings.batch_size)
        nll, toks = list(gold.nll), list(gold.n_tokens_each)
    _sync()
    t3 = time.perf_counter()
    return GroupScore(completions, verdicts, nll, toks, [len(g.encode("utf-8")) for g in golds], t1 - t0, t2 - t1,
                      t3 - t2)


def _score_block(task: str, records: Sequence[Record], verdicts: Sequence[Verdict], nll: Sequence[float],
                 n_tokens: Sequence[int], n_bytes: Sequence[int]) -> dict[str, Any]:
    """Exact match (pass@1 for code) and gold bits per byte of a set of answered items."""
    n = len(records)
    checker = t2_task(task).checker
    out: dict[str, Any] = {"n": n, "metric": "pass@1" if checker in ("mbpp", "humaneval") else "exact_match",
                           "exact_match": sum(v.correct for v in verdicts) / n if n else None,
                           "n_correct": int(sum(v.correct for v in verdicts))}
    if nll:
        total = float(sum(nll))
        out["bits_per_byte"] = float(total / np.log(2) / max(1, sum(n_bytes)))
        out["nll_per_token"] = float(total / max(1, sum(n_tokens)))
    return out


def _timing(first: float, second: float, check: float, likelihood: float, **extra: float) -> dict[str, Any]:
    total = first + second
    return {"first_pass_seconds": first, "second_pass_seconds": second,
            "first_pass_share_of_total": first / total if total > 0 else None,
            "first_pass_vs_second": first / second if second > 0 else None,
            "check_seconds": check, "likelihood_seconds": likelihood, **extra}


def exclude_shots(test: Sequence[Record], shots: Sequence[Record]) -> tuple[list[Record], list[str]]:
    """``test`` without any item whose query equals a shot's (by instruction text), and the dropped ids."""
    seen = {s.instruction for s in shots}
    kept = [r for r in test if r.instruction not in seen]
    return kept, [r.id for r in test if r.instruction in seen]


def draw_shots(train: Sequence[Record], shots: int, seed: int) -> list[Record]:
    """``shots`` records of the task's train split, drawn without replacement with ``random.Random(seed)``."""
    if shots > len(train):
        raise AdaptError(f"few_shot.shots={shots} but the task's train split has {len(train)} examples; raise "
                         "task.n_train or lower few_shot.shots.")
    return random.Random(seed).sample(list(train), shots)


# ---------------------------------------------------------------------------------------------------- dispatch
def classify(em: ExpertModel, tokenizer: Any, records: Sequence[Record], settings: AdaptSettings,
             classifier: Expert | None = None) -> tuple[list[str], list[str], float]:
    """First pass: (completions, domains, seconds) of the classification request for each record, under the base
    weights (``classifier`` None: the prompt strategy) or the classification expert's z."""
    prompts = classification_prompts(records, tokenizer)
    budget = _budget(records[0].task, settings.classify_max_new_tokens)
    _sync()
    t0 = time.perf_counter()
    if classifier is None:
        em.use_base()
    else:
        em.use_expert(classifier)
    completions = generate_greedy(em.model, tokenizer, prompts, max_new_tokens=budget,
                                  batch_size=settings.batch_size)
    _sync()
    return completions, [domain_of(c) for c in completions], time.perf_counter() - t0


def answer_routes(em: ExpertModel, tokenizer: Any, records: Sequence[Record], routes: Sequence[int | None],
                  settings: AdaptSettings) -> tuple[list[GroupScore], list[list[int]], float]:
    """Second pass of a dispatch: each record answered by expert ``routes[i]`` (an index into ``em.experts``) or
    the base weights (None). Groups run expert by expert in index order, the base group last.

    Returns (group scores, the record indices of each group, seconds of z switches + generation).
    """
    keys = sorted({r for r in routes if r is not None}) + ([None] if None in routes else [])
    groups, members = [], []
    seconds = 0.0
    for key in keys:
        idx = [i for i, r in enumerate(routes) if r == key]
        _sync()
        t0 = time.perf_counter()
        if key is None:
            em.use_base()
        else:
            em.use_expert(key)
        _sync()
        seconds += time.perf_counter() - t0
        g = answer(em.model, tokenizer, [records[i] for i in idx], settings)
        seconds += g.generation_seconds
        groups.append(g)
        members.append(idx)
    return groups, members, seconds


def run_dispatch(em: ExpertModel, tokenizer: Any, test: Sequence[Record], settings: AdaptSettings,
                 classifier: Expert | None = None) -> dict[str, Any]:
    """The prompt (``classifier`` None) or classification-expert strategy on ``test``: result block (JSON)."""
    test = list(test)
    if not test:
        raise AdaptError("No test items to answer.")
    task = test[0].task
    by_domain = check_domains(em.experts)
    cls_out, domains, first = classify(em, tokenizer, test, settings, classifier)
    routes = [by_domain.get(d) for d in domains]
    groups, members, second = answer_routes(em, tokenizer, test, routes, settings)
    n = len(test)
    completions: list[str] = [""] * n
    verdicts: list[Verdict | None] = [None] * n
    nll: list[float] = [0.0] * n
    toks: list[int] = [0] * n
    nbytes: list[int] = [0] * n
    for g, idx in zip(groups, members, strict=True):
        for j, i in enumerate(idx):
            completions[i], verdicts[i], nbytes[i] = g.completions[j], g.verdicts[j], g.n_bytes[j]
            if g.nll:
                nll[i], toks[i] = g.nll[j], g.n_tokens[j]
    vs = [v for v in verdicts if v is not None]
    score = _score_block(task, test, vs, nll if settings.bits_per_byte else [], toks, nbytes)
    per_domain: dict[str, Any] = {}
    for d in sorted(set(domains)):
        idx = [i for i, x in enumerate(domains) if x == d]
        expert = by_domain.get(d)
        per_domain[d] = {"n": len(idx), "answered_by": "base" if expert is None else em.experts[expert].source,
                         "exact_match": sum(vs[i].correct for i in idx) / len(idx)}
    check = sum(g.check_seconds for g in groups)
    ll = sum(g.likelihood_seconds for g in groups)
    items = [{"id": r.id, "domain": domains[i], "answered_by": "base" if routes[i] is None else routes[i],
              "classification": cls_out[i], "completion": completions[i], "correct": vs[i].correct,
              "prediction": vs[i].prediction, "status": vs[i].status} for i, r in enumerate(test)]
    return {"strategy": "prompt" if classifier is None else "cls_expert", "task": task, "score": score,
            "timing": _timing(first, second, check, ll),
            "routing": {"domains": {d: by_domain.get(d) for d in ("code", "math", "reasoning")},
                        "counts": {d: domains.count(d) for d in sorted(set(domains))}, "per_domain": per_domain,
                        "classifier": None if classifier is None else classifier.record()},
            "items": items}


# ---------------------------------------------------------------------------------------------------- few-shot
class ShotObjective:
    """CEM's objective on the shots: accuracy of the mixture's greedy answers (cached per α), and the tie-breaker."""

    def __init__(self, em: ExpertModel, tokenizer: Any, shots: Sequence[Record], settings: AdaptSettings):
        self.em, self.tok, self.shots, self.settings = em, tokenizer, list(shots), settings
        self.k, self.m = len(em.experts), len(em.names)
        self.per_matrix = settings.few_shot.per_matrix
        self.prompts = [build_prompt(r, tokenizer) for r in self.shots]
        self.budget = settings.few_shot.max_new_tokens or settings.max_new_tokens
        self.cache: dict[bytes, tuple[float, list[str], list[bool]]] = {}
        self.tie_cache: dict[bytes, float] = {}
        self.hits = 0
        self.generation_seconds = 0.0

    @property
    def dim(self) -> int:
        return self.k * self.m if self.per_matrix else self.k

    def alpha(self, x: np.ndarray) -> np.ndarray:
        """α of a CEM candidate: shape (K,) or (K, M)."""
        return x.reshape(self.k, self.m) if self.per_matrix else x

    def _run(self, x: np.ndarray) -> tuple[float, list[str], list[bool]]:
        key = np.asarray(x, dtype=np.float64).tobytes()
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.em.use_mixture(self.alpha(x))
        t0 = time.perf_counter()
        out = generate_greedy(self.em.model, self.tok, self.prompts,
                              max_new_tokens=_budget(self.shots[0].task, self.budget),
                              batch_size=self.settings.batch_size)
        _sync()
        self.generation_seconds += time.perf_counter() - t0
        correct = [v.correct for v in check_completions(self.shots, out, code_timeout=self.settings.code_timeout)]
        value = (float(np.mean(correct)), out, correct)
        self.cache[key] = value
        return value

    def __call__(self, x: np.ndarray) -> float:
        return self._run(x)[0]

    def tie_breaker(self) -> Callable[[np.ndarray], float] | None:
        """The tie-breaker of ``few_shot.tie_break`` (higher is better), or None."""
        from spectune.evaluation.likelihood import score_gold

        mode = self.settings.few_shot.tie_break
        if mode == "none":
            return None

        def mean_loglik(prompts: list[str], conts: list[str]) -> float:
            res = score_gold(self.em.model, self.tok, prompts, conts, batch_size=self.settings.batch_size)
            return float(np.mean([-n / max(1, t) for n, t in zip(res.nll, res.n_tokens_each, strict=True)]))

        def gold(x: np.ndarray) -> float:
            self.em.use_mixture(self.alpha(x))
            return mean_loglik(self.prompts, [gold_continuation(r) for r in self.shots])

        def completions(x: np.ndarray) -> float:
            _, out, correct = self._run(x)
            pairs = [(p, c) for p, c, ok in zip(self.prompts, out, correct, strict=True) if ok and c.strip()]
            if not pairs:
                return 0.0  # the official value when no shot is answered correctly
            self.em.use_mixture(self.alpha(x))
            return mean_loglik([p for p, _ in pairs], [c for _, c in pairs])

        fn = gold if mode == "gold" else completions

        def cached(x: np.ndarray) -> float:  # a collapsed CEM draws the same α again: score it once
            key = np.asarray(x, dtype=np.float64).tobytes()
            if key not in self.tie_cache:
                self.tie_cache[key] = fn(x)
            return self.tie_cache[key]

        return cached


def run_few_shot(em: ExpertModel, tokenizer: Any, train: Sequence[Record], test: Sequence[Record],
                 settings: AdaptSettings, seed: int = 0) -> dict[str, Any]:
    """The few-shot strategy: CEM over α on shots of ``train``, then ``test`` (shots excluded) answered with the
    best mixture. Result block (JSON)."""
    fs = settings.few_shot
    shots = draw_shots(train, fs.shots, seed)
    test, dropped = exclude_shots(test, shots)
    if not test:
        raise AdaptError("Every test item equals a shot; nothing is left to score.")
    task = test[0].task
    objective = ShotObjective(em, tokenizer, shots, settings)
    k = len(em.experts)
    cem_settings = fs.cem
    _sync()
    t0 = time.perf_counter()
    result = cem_maximize(objective, objective.dim, cem_settings, init_mean=np.full(objective.dim, 1.0 / k),
                          tie_breaker=objective.tie_breaker())
    _sync()
    search = time.perf_counter() - t0
    alpha = objective.alpha(result.x)
    _sync()
    t1 = time.perf_counter()
    em.use_mixture(alpha)
    _sync()
    switch = time.perf_counter() - t1
    g = answer(em.model, tokenizer, test, settings)
    score = _score_block(task, test, g.verdicts, g.nll, g.n_tokens, g.n_bytes)
    items = [{"id": r.id, "completion": c, "correct": v.correct, "prediction": v.prediction, "status": v.status}
             for r, c, v in zip(test, g.completions, g.verdicts, strict=True)]
    history = [{k2: v for k2, v in h.items() if k2 not in ("next_mean", "next_std")} for h in result.history]
    return {"strategy": "few_shot", "task": task, "score": score,
            "timing": _timing(search, switch + g.generation_seconds, g.check_seconds, g.likelihood_seconds,
                              cem_search_seconds=search, cem_generation_seconds=objective.generation_seconds),
            "few_shot": {"shots": [r.id for r in shots], "shots_from": "train", "n_shots": len(shots),
                         "excluded_test_items": dropped, "per_matrix": fs.per_matrix,
                         "alpha": np.asarray(alpha).tolist(), "experts": [e.source for e in em.experts],
                         "matrices": list(em.names) if fs.per_matrix else None,
                         "shot_accuracy": result.score, "tie_value": result.tie, "tie_break": fs.tie_break,
                         "evaluations": result.evaluations, "distinct_evaluations": len(objective.cache),
                         "tie_evaluations": result.tie_evaluations,
                         "distinct_tie_evaluations": len(objective.tie_cache),
                         "cem": {"population": cem_settings.population, "elite_ratio": cem_settings.elite_ratio,
                                 "n_elites": cem_settings.n_elites, "iterations": cem_settings.iterations,
                                 "low": cem_settings.low, "high": cem_settings.high,
                                 "init_mean": 1.0 / k, "seed": cem_settings.seed,
                                 "init_std": cem_settings.init_std if cem_settings.init_std is not None
                                 else (cem_settings.high - cem_settings.low) / 2},
                         "history": history},
            "items": items}


__all__ = ["STRATEGIES", "AdaptSettings", "FewShotSettings", "GroupScore", "ShotObjective", "answer",
           "answer_routes", "classify", "draw_shots", "exclude_shots", "run_dispatch", "run_few_shot"]
