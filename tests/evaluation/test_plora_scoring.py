"""Scoring PeriodicLoRA's benchmarks: GSM8K gold NLL per token and bits per byte against an independent float64,
one-sequence-at-a-time computation on real SmolLM2 weights (2-layer cut); MMLU accuracy (answer texts) and letter
accuracy against the same reference's argmax; ``primary`` of the composite."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from spectune.data import gsm8k, mmlu
from spectune.data.tasks import load_task
from spectune.evaluation.likelihood import score_gold
from spectune.evaluation.suite import evaluate_plora, evaluate_splits


@pytest.fixture(scope="module")
def model64(smollm2_cut):
    model, _ = smollm2_cut
    return copy.deepcopy(model).double().eval()


def _reference(model64, tok, context: str, continuation: str) -> tuple[float, int]:
    """Summed NLL (nats) of ``continuation`` after ``context`` and its number of tokens: float64, no batching."""
    ctx_ids = tok(context, add_special_tokens=False)["input_ids"]
    all_ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
    assert all_ids[:len(ctx_ids)] == ctx_ids  # the context's tokens are a prefix: a clean split
    with torch.no_grad():
        logp = torch.log_softmax(model64(torch.tensor([all_ids])).logits[0].double(), dim=-1)
    nll = -sum(float(logp[pos - 1, all_ids[pos]]) for pos in range(len(ctx_ids), len(all_ids)))
    return nll, len(all_ids) - len(ctx_ids)


@pytest.fixture(scope="module")
def gsm8k_records():
    return gsm8k.load_records()[:3]


@pytest.fixture(scope="module")
def gsm8k_reference(smollm2_cut, model64, gsm8k_records):
    _, tok = smollm2_cut
    ref = [_reference(model64, tok, r.context, r.choices[0]) for r in gsm8k_records]
    nll, tokens = sum(n for n, _ in ref), sum(k for _, k in ref)
    n_bytes = sum(len(r.choices[0].encode("utf-8")) for r in gsm8k_records)
    return {"nll_per_token": nll / tokens, "bits_per_byte": nll / math.log(2) / n_bytes, "n_tokens": tokens,
            "n_bytes": n_bytes, "per_item": ref}


def test_gsm8k_gold_nll_matches_float64_reference(smollm2_cut, model64, gsm8k_records, gsm8k_reference) -> None:
    model, tok = smollm2_cut
    ref = gsm8k_reference
    assert ref["n_bytes"] > sum(len(r.choices[0]) for r in gsm8k_records)  # "’" etc.: bytes, not characters
    contexts, golds = [r.context for r in gsm8k_records], [r.choices[0] for r in gsm8k_records]
    # Same arithmetic as the reference, batched with right padding: equal to float64 rounding.
    got = score_gold(model64, tok, contexts, golds, batch_size=2)
    assert (got.n_tokens, got.n_bytes) == (ref["n_tokens"], ref["n_bytes"])
    assert got.n_tokens_each == [k for _, k in ref["per_item"]]
    assert got.nll == pytest.approx([n for n, _ in ref["per_item"]], abs=1e-6)
    assert got.nll_per_token == pytest.approx(ref["nll_per_token"], abs=1e-9)
    assert got.bits_per_byte == pytest.approx(ref["bits_per_byte"], abs=1e-9)
    # The float32 model through the suite (what a run writes) stays within float32 rounding of the reference.
    res = evaluate_plora(model, tok, "gsm8k", gsm8k_records, batch_size=8)
    assert res["n"] == 3 and (res["n_tokens"], res["n_bytes"]) == (ref["n_tokens"], ref["n_bytes"])
    assert res["nll_per_token"] == pytest.approx(ref["nll_per_token"], rel=1e-4)
    assert res["bits_per_byte"] == pytest.approx(ref["bits_per_byte"], rel=1e-4)


def test_mmlu_accuracies_match_reference_argmax(smollm2_cut, model64) -> None:
    _, tok = smollm2_cut
    records = [mmlu.load_records()[i] for i in (0, 5000, 9000)]
    hits = hits_norm = hits_letter = 0
    for r in records:
        text = [-_reference(model64, tok, r.context, c)[0] for c in r.choices]
        norm = [ll / len(c[1:]) for ll, c in zip(text, r.choices)]  # lm-eval: length of the bare choice
        v = mmlu.letter_view(r)
        letters = [-_reference(model64, tok, v.context, c)[0] for c in v.choices]
        hits += max(range(4), key=text.__getitem__) == r.label
        hits_norm += max(range(4), key=norm.__getitem__) == r.label
        hits_letter += max(range(4), key=letters.__getitem__) == r.label
    res = evaluate_plora(model64, tok, "mmlu", records, batch_size=4)
    assert res == {"n": 3, "accuracy": pytest.approx(hits / 3), "acc_norm": pytest.approx(hits_norm / 3),
                   "accuracy_letter": pytest.approx(hits_letter / 3)}


def test_composite_reports_each_task_and_primary(smollm2_cut) -> None:
    model, tok = smollm2_cut
    splits = load_task("mmlu_gsm8k", n_train=0, n_test=2, seed=0)
    out = evaluate_splits(model, tok, splits, protocols=["likelihood"], batch_size=8)
    assert set(out) == {"mmlu", "gsm8k", "primary"}
    assert set(out["mmlu"]) == {"n", "accuracy", "acc_norm", "accuracy_letter"}
    assert set(out["gsm8k"]) == {"n", "nll_per_token", "bits_per_byte", "n_tokens", "n_bytes"}
    assert out["gsm8k"]["bits_per_byte"] > 0 and out["gsm8k"]["nll_per_token"] > 0
    assert out["primary"] == {"metric": "accuracy", "value": out["mmlu"]["accuracy"], "tasks": ["mmlu"]}
    with pytest.raises(ValueError, match="No PeriodicLoRA-benchmark scorer for task 'boolq'"):
        evaluate_plora(model, tok, "boolq", splits.test[:1], batch_size=1)
