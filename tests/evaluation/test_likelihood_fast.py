"""The fast likelihood scorer (shared contexts, packed rows, length batches) against the one-by-one reference.

All on the 2-layer SmolLM2 cut in float32 on the CPU: log-probabilities within 1e-4 of ``mode="reference"`` and the
same predictions, for items whose choices differ in length, a context whose tokenisation splits differently at
the boundary with one of its choices, truncated requests, other padding sides and batch compositions, both
attention implementations that take the 4-D mask, and the full-logits route.
"""

from __future__ import annotations

import copy
import random

import pytest

from spectune.data.records import Record
from spectune.evaluation import likelihood
from spectune.evaluation.likelihood import (
    encode_pair,
    encode_pairs,
    score_continuations,
    score_gold,
    score_multiple_choice,
)

TOL = 1e-4


@pytest.fixture(scope="module")
def records(olmo_split) -> list[Record]:
    ds = olmo_split("ai2_arc/ARC-Easy").select(range(3))
    arc = [Record(task="arc_e", id=str(i), context=f"Question: {d['question']}\nAnswer:",
                  choices=tuple(" " + c for c in d["choices"]["text"]),
                  label=d["choices"]["label"].index(d["answerKey"])) for i, d in enumerate(ds)]
    extra = [
        # choices of 1 to many tokens; a single-token choice packs no tokens of its own
        Record(task="x", id="len", context="The capital of France is", label=0,
               choices=(" Paris", " the city of Lyon, on the Rhône river", " a", " not known to anyone here")),
        # boundary: "I do" + "n't know" tokenises as "I| don|'t| know", so that choice cannot share "I| do"
        Record(task="x", id="boundary", context="I do", choices=("n't know", " know", " not know"), label=0),
        # trailing whitespace of the context moves to the continuations
        Record(task="x", id="space", context="Answer: ", choices=("yes", "no", "maybe so"), label=1),
    ]
    return arc + extra


@pytest.fixture(scope="module")
def reference(smollm2_cut, records):
    model, tok = smollm2_cut
    return score_multiple_choice(model, tok, records, mode="reference")


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def test_encode_pairs_equals_encode_pair(smollm2_cut, records):
    _, tok = smollm2_cut
    pairs = [(r.context, c) for r in records for c in r.choices] + [("", " hello"), ("x  ", "y")]
    assert encode_pairs(tok, pairs) == [encode_pair(tok, c, x) for c, x in pairs]


def test_fast_equals_reference_fp32(smollm2_cut, records, reference):
    model, tok = smollm2_cut
    fast = score_multiple_choice(model, tok, records, precision="fp32")
    assert _max_diff(fast.loglikelihoods, reference.loglikelihoods) < TOL
    assert fast.predictions == reference.predictions
    assert fast.predictions_norm == reference.predictions_norm
    assert (fast.accuracy, fast.acc_norm) == (reference.accuracy, reference.acc_norm)
    stats = fast.stats
    assert stats["mode"] == "fast" and stats["head"].startswith("decoder")
    n = sum(len(r.choices) for r in records)
    assert stats["n_requests"] == n and stats["n_contexts"] == len(records)
    # only the boundary item's "n't know" fell back; its two other choices still share "I| do"
    assert (stats["n_split_contexts"], stats["n_boundary_fallback"]) == (1, 1)
    assert stats["n_shared_requests"] == n - 1
    assert stats["n_tokens"] < reference.stats["n_tokens"] / 2  # each context ran once, not once per choice


def test_batched_mode_equals_reference(smollm2_cut, records, reference):
    model, tok = smollm2_cut
    batched = score_multiple_choice(model, tok, records, batch_size=5, mode="batched", precision="fp32")
    assert _max_diff(batched.loglikelihoods, reference.loglikelihoods) < TOL
    assert batched.predictions == reference.predictions and batched.stats["n_shared_requests"] == 0


def test_padding_side_and_batch_composition_do_not_matter(smollm2_cut, records, reference):
    model, tok = smollm2_cut
    side = tok.padding_side
    shuffled = list(range(len(records)))
    random.Random(0).shuffle(shuffled)
    try:
        tok.padding_side = "left"
        left = score_multiple_choice(model, tok, records, precision="fp32")
    finally:
        tok.padding_side = side
    one_row = score_multiple_choice(model, tok, records, precision="fp32", max_batch_tokens=1)  # a row per forward
    assert one_row.stats["n_forwards"] == len(records) + 1  # the boundary item's fallback is a row of its own
    mixed = score_multiple_choice(model, tok, [records[i] for i in shuffled], precision="fp32", max_batch_tokens=300)
    unshuffled = [None] * len(records)
    for pos, i in enumerate(shuffled):
        unshuffled[i] = mixed.loglikelihoods[pos]
    for result in (left.loglikelihoods, one_row.loglikelihoods, unshuffled):
        assert _max_diff(result, reference.loglikelihoods) < TOL
    assert left.predictions == one_row.predictions == reference.predictions
    assert [mixed.predictions[shuffled.index(i)] for i in range(len(records))] == reference.predictions


def test_eager_attention_and_full_logits_route(smollm2_cut, records, reference, monkeypatch):
    model, tok = smollm2_cut
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert eager.config._attn_implementation == "eager"
    result = score_multiple_choice(eager, tok, records, precision="fp32")
    assert result.stats["n_shared_requests"] > 0  # the float 4-D mask was used
    assert _max_diff(result.loglikelihoods, reference.loglikelihoods) < TOL
    monkeypatch.setattr(likelihood, "_PLAIN_HEAD_TYPES", frozenset())
    full = score_multiple_choice(model, tok, records, precision="fp32")
    assert full.stats["head"] == "full logits"
    assert _max_diff(full.loglikelihoods, reference.loglikelihoods) < TOL
    assert full.predictions == reference.predictions


def test_truncation_and_gold_likelihood(smollm2_cut):
    model, tok = smollm2_cut
    contexts = ["one two three four five six seven eight nine ten eleven", "Le café est", "def f(a):", "Le café est"]
    golds = [" eleven", " très chaud ☕", "\n    return a + b", " froid"]
    pairs = list(zip(contexts, golds, strict=True))
    lengths = [sum(map(len, encode_pair(tok, c, g))) - 1 for c, g in pairs]  # input tokens of each request
    assert lengths[0] > 10 and max(lengths[1:]) <= 10
    ref = score_continuations(model, tok, pairs, max_length=10, mode="reference")
    fast = score_continuations(model, tok, pairs, max_length=10, precision="fp32")
    assert fast.logprobs == pytest.approx(ref.logprobs, abs=TOL)
    assert fast.stats.n_truncated == ref.stats.n_truncated == 1
    assert fast.stats.n_shared_requests == 2  # the two "Le café est" requests
    gold_ref = score_gold(model, tok, contexts, golds, mode="reference")
    gold_fast = score_gold(model, tok, contexts, golds, precision="fp32")
    assert gold_fast.nll == pytest.approx(gold_ref.nll, abs=TOL)
    assert gold_fast.n_tokens_each == gold_ref.n_tokens_each


def test_bf16_close_calls_are_rescored_in_fp32(smollm2_cut, records, reference):
    model, tok = smollm2_cut
    raw = score_multiple_choice(model, tok, records, precision="bf16", recheck_margin=0)
    assert raw.stats["precision"] == "bf16 autocast" and raw.stats["n_rechecked_items"] == 0
    assert _max_diff(raw.loglikelihoods, reference.loglikelihoods) < 1.0  # bf16: close, not equal
    checked = score_multiple_choice(model, tok, records, precision="bf16", recheck_margin=1e9)
    assert checked.stats["n_rechecked_items"] == len(records)  # every item within the margin: all in fp32
    assert _max_diff(checked.loglikelihoods, reference.loglikelihoods) < TOL
    assert checked.predictions == reference.predictions


def test_auto_precision_is_fp32_on_cpu(smollm2_cut, records):
    model, tok = smollm2_cut
    assert score_multiple_choice(model, tok, records[:1]).stats["precision"] == "model dtype (float32)"
    with pytest.raises(ValueError, match="mode"):
        score_continuations(model, tok, [("a", " b")], mode="quick")
    for mode in ("fast", "reference"):  # the choices are named, whatever the mode
        with pytest.raises(ValueError, match=r"precision must be one of auto, fp32, tf32, bf16; got 'fp8'"):
            score_continuations(model, tok, [("a", " b")], mode=mode, precision="fp8")
    with pytest.raises(ValueError, match="recheck_margin"):
        score_multiple_choice(model, tok, records[:1], precision="tf32", recheck_margin=-1)


def _matmul_setting():
    import torch

    matmul = torch.backends.cuda.matmul
    return matmul.fp32_precision if hasattr(matmul, "fp32_precision") else matmul.allow_tf32


@pytest.mark.parametrize("before", [None, "ieee", "tf32"])
def test_tf32_is_set_inside_the_call_only(smollm2_cut, records, before):
    """TF32 inside the scoring forwards (fp32: full float32), the global setting restored after, exceptions too."""
    import torch

    model, tok = smollm2_cut
    matmul = torch.backends.cuda.matmul
    name = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    old = getattr(matmul, name)
    if before is not None:  # a global setting made by the caller (transformers' tf32=True sets "tf32")
        setattr(matmul, name, before if name == "fp32_precision" else before == "tf32")
    try:
        start = _matmul_setting()
        seen = []
        hook = model.model.layers[0].register_forward_pre_hook(lambda *_: seen.append(_matmul_setting()))
        try:
            result = score_multiple_choice(model, tok, records[:1], precision="tf32", recheck_margin=0)
            score_multiple_choice(model, tok, records[:1], precision="fp32")
        finally:
            hook.remove()
        on, off = ("tf32", "ieee") if name == "fp32_precision" else (True, False)
        assert seen == [on, off] and _matmul_setting() == start
        assert result.stats["precision"] == likelihood.TF32_PRECISION
        boom = model.model.layers[0].register_forward_pre_hook(lambda *_: 1 / 0)
        try:
            with pytest.raises(ZeroDivisionError):
                score_multiple_choice(model, tok, records[:1], precision="tf32")
        finally:
            boom.remove()
        assert _matmul_setting() == start
    finally:
        setattr(matmul, name, old)


def test_tf32_close_calls_are_rescored_in_fp32(smollm2_cut, records, reference):
    """The re-check path of tf32 (on a CPU TF32 changes nothing, so every run equals float32)."""
    model, tok = smollm2_cut
    everything = score_multiple_choice(model, tok, records, precision="tf32", recheck_margin=1e9)
    assert everything.stats["n_rechecked_items"] == len(records) and everything.stats["recheck_margin"] == 1e9
    assert everything.predictions == reference.predictions
    assert everything.predictions_norm == reference.predictions_norm
    assert _max_diff(everything.loglikelihoods, reference.loglikelihoods) < TOL
    nothing = score_multiple_choice(model, tok, records, precision="tf32", recheck_margin=0)
    assert nothing.stats["n_rechecked_items"] == 0 and nothing.stats["recheck_margin"] == 0


def test_recheck_bounds_grow_with_the_square_root_of_the_tokens():
    import numpy as np

    bounds = likelihood.recheck_bounds([0, 5, 96], 0.1)
    assert np.allclose(bounds, [0.2, 0.3, 1.0])
    assert likelihood.RECHECK_MARGIN == {"bf16": 0.1, "tf32": 0.03}
    chars = np.ones(2)
    # a 1-token and a 96-token choice 1.1 nats apart: bounds 0.224 + 1.0 cover the gap, so it is a close call
    assert likelihood._close_call(np.array([-10.0, -11.1]), chars, likelihood.recheck_bounds([1, 96], 0.1))
    assert not likelihood._close_call(np.array([-10.0, -11.1]), chars, likelihood.recheck_bounds([1, 1], 0.1))
    # acc_norm only: sums 2 nats apart, per character -1.0 vs -1.09 (10 and 11 characters), a gap of 0.091
    ll, chars = np.array([-10.0, -12.0]), np.array([10.0, 11.0])
    assert likelihood._close_call(ll, chars, np.array([0.5, 0.5]))  # 0.5 / 10 + 0.5 / 11 = 0.095 >= 0.091
    assert not likelihood._close_call(ll, chars, np.array([0.4, 0.4]))  # 0.076 < 0.091
