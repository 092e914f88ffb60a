"""Log-likelihood multiple choice and gold bits per byte against a float64 one-sequence-at-a-time reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from spectune.data.records import Record
from spectune.evaluation.likelihood import (
    bits_per_byte_per_item,
    continuation_logprobs,
    encode_pair,
    gold_bits_per_byte,
    score_multiple_choice,
)


@pytest.fixture(scope="module")
def arc_records(olmo_split) -> list[Record]:
    ds = olmo_split("ai2_arc/ARC-Easy").select(range(4))
    return [
        Record(task="arc_e", id=str(i), context=f"Question: {d['question']}\nAnswer:",
               choices=tuple(" " + c for c in d["choices"]["text"]), label=d["choices"]["label"].index(d["answerKey"]))
        for i, d in enumerate(ds)
    ]


@pytest.fixture(scope="module")
def model64(smollm2_cut):
    model, _ = smollm2_cut
    return copy.deepcopy(model).double().eval()


def _reference_logprob(model64, tok, context: str, continuation: str) -> float:
    """One sequence, no padding, float64: sum over continuation tokens of log_softmax gathered by hand."""
    ctx_ids = tok(context, add_special_tokens=False)["input_ids"]
    all_ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model64(torch.tensor([all_ids])).logits[0].double()
    total = 0.0
    for pos in range(len(ctx_ids), len(all_ids)):
        row = logits[pos - 1]
        total += float(row[all_ids[pos]] - torch.logsumexp(row, dim=0))
    return total


def test_batched_scores_match_float64_reference(smollm2_cut, model64, arc_records):
    model, tok = smollm2_cut
    records = arc_records
    pairs = [(r.context, c) for r in records for c in r.choices]
    reference = [_reference_logprob(model64, tok, c, x) for c, x in pairs]
    # Same arithmetic as the reference, batched with right padding: equal to float64 rounding.
    batched64 = continuation_logprobs(model64, tok, pairs, batch_size=5)
    assert batched64 == pytest.approx(reference, abs=1e-4)
    # The float32 model (what users run) stays within float32 rounding of the reference.
    batched32 = continuation_logprobs(model, tok, pairs, batch_size=5)
    assert max(abs(a - b) for a, b in zip(batched32, reference)) < 5e-3


def test_multiple_choice_predictions_and_acc_norm(smollm2_cut, model64, arc_records):
    _, tok = smollm2_cut
    records = arc_records
    result = score_multiple_choice(model64, tok, records, batch_size=3)
    hits, hits_norm = 0, 0
    for r, pred, pred_norm, lls in zip(records, result.predictions, result.predictions_norm, result.loglikelihoods):
        ref = [_reference_logprob(model64, tok, r.context, c) for c in r.choices]
        assert lls == pytest.approx(ref, abs=1e-4)
        best = max(range(len(ref)), key=lambda i: ref[i])
        best_norm = max(range(len(ref)), key=lambda i: ref[i] / len(r.choices[i][1:]))  # lm-eval: bare choice length
        assert (pred, pred_norm) == (best, best_norm)
        hits += best == r.label
        hits_norm += best_norm == r.label
    assert result.accuracy == pytest.approx(hits / len(records))
    assert result.acc_norm == pytest.approx(hits_norm / len(records))


def test_gold_bits_per_byte(smollm2_cut, model64):
    _, tok = smollm2_cut
    contexts = ["Question: What is 2 + 3?\nAnswer:", "Le café est", "def add(a, b):"]
    golds = [" 5", " très chaud ☕", "\n    return a + b"]
    ref_bits = [-_reference_logprob(model64, tok, c, g) / math.log(2) for c, g in zip(contexts, golds)]
    n_bytes = [len(g.encode("utf-8")) for g in golds]
    assert n_bytes[1] > len(golds[1])  # multi-byte characters count as bytes
    assert gold_bits_per_byte(model64, tok, contexts, golds) == pytest.approx(sum(ref_bits) / sum(n_bytes), abs=1e-6)
    per_item = bits_per_byte_per_item(model64, tok, contexts, golds, batch_size=2)
    assert per_item == pytest.approx([b / n for b, n in zip(ref_bits, n_bytes)], abs=1e-6)


def test_encode_pair_moves_trailing_space_and_handles_empty_context(smollm2_cut):
    _, tok = smollm2_cut
    ctx, cont = encode_pair(tok, "Answer: ", "yes")
    assert ctx == tok("Answer:", add_special_tokens=False)["input_ids"]
    assert ctx + cont == tok("Answer: yes", add_special_tokens=False)["input_ids"]
    ctx, cont = encode_pair(tok, "", "hello")
    assert ctx == [tok.bos_token_id] and cont == tok("hello", add_special_tokens=False)["input_ids"]


def test_left_truncation_to_max_length(smollm2_cut, model64):
    _, tok = smollm2_cut
    context, continuation = "one two three four five six seven eight nine ten", " eleven"
    all_ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
    n_cont = len(all_ids) - len(tok(context, add_special_tokens=False)["input_ids"])
    max_length = 6
    inputs = all_ids[:-1][-max_length:]
    with torch.no_grad():
        logp = torch.log_softmax(model64(torch.tensor([inputs])).logits[0], dim=-1)
    targets = all_ids[-n_cont:]
    expected = sum(float(logp[len(inputs) - n_cont + k, t]) for k, t in enumerate(targets))
    got = continuation_logprobs(model64, tok, [(context, continuation)], max_length=max_length)[0]
    assert got == pytest.approx(expected, abs=1e-8)


def test_unlabelled_records_get_predictions(smollm2_cut):
    model, tok = smollm2_cut
    records = [Record(task="x", id="0", context="The sky is", choices=("blue", "green"))]
    result = score_multiple_choice(model, tok, records, target_delimiter=" ")
    assert result.predictions[0] in (0, 1) and math.isnan(result.accuracy)
    spaced = [Record(task="x", id="0", context="The sky is", choices=(" blue", " green"))]
    assert score_multiple_choice(model, tok, spaced).loglikelihoods == result.loglikelihoods
