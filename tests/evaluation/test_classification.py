"""Encoder predictions (batched, length-sorted) against one-at-a-time predictions, and the GLUE score."""

from __future__ import annotations

import pytest
import torch

from spectune.data.records import Record
from spectune.evaluation.classification import evaluate_glue, predict_sequence_classification
from spectune.evaluation.glue_metrics import glue_metrics


def _minilm(num_labels: int):
    from spectune.models.loading import load_model_and_tokenizer

    torch.manual_seed(0)  # the classification head is freshly initialised
    model, tok = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=num_labels)
    return model.eval(), tok


@pytest.fixture(scope="module")
def rte_records(olmo_split) -> list[Record]:
    ds = olmo_split("glue/rte").select(range(10))
    return [Record(task="rte", id=str(d["idx"]), text=d["sentence1"], text_pair=d["sentence2"], label=d["label"])
            for d in ds]


def _one_at_a_time(model, tok, record: Record, max_length: int) -> torch.Tensor:
    enc = tok(record.text, record.text_pair, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[0]


def test_classification_matches_unbatched(rte_records):
    model, tok = _minilm(2)
    preds = predict_sequence_classification(model, tok, rte_records, batch_size=4, max_length=64)
    expected = [int(_one_at_a_time(model, tok, r, 64).argmax()) for r in rte_records]
    assert preds == expected
    metrics = evaluate_glue(model, tok, "rte", rte_records, batch_size=4, max_length=64)
    assert metrics["accuracy"] == pytest.approx(sum(p == r.label for p, r in zip(expected, rte_records)) / 10)


def test_regression_head_for_stsb(rte_records):
    model, tok = _minilm(1)
    records = [Record(task="stsb", id=r.id, text=r.text, text_pair=r.text_pair, label=float(i) / 2)
               for i, r in enumerate(rte_records)]
    preds = predict_sequence_classification(model, tok, records, batch_size=3, max_length=64)
    expected = [float(_one_at_a_time(model, tok, r, 64)[0]) for r in records]
    assert preds == pytest.approx(expected, abs=1e-5)
    metrics = evaluate_glue(model, tok, "stsb", records, batch_size=3, max_length=64)
    assert metrics == pytest.approx(glue_metrics("stsb", expected, [r.label for r in records]), abs=1e-5)


def test_single_sentences_and_errors(olmo_split):
    model, tok = _minilm(2)
    ds = olmo_split("glue/sst2").select(range(6))
    records = [Record(task="sst2", id=str(d["idx"]), text=d["sentence"], label=d["label"]) for d in ds]
    preds = predict_sequence_classification(model, tok, records, batch_size=4)
    assert len(preds) == 6 and all(p in (0, 1) for p in preds)
    mixed = records[:1] + [Record(task="rte", id="x", text="a", text_pair="b", label=0)]
    with pytest.raises(ValueError, match="text_pair"):
        predict_sequence_classification(model, tok, mixed)
    with pytest.raises(ValueError, match="label"):
        evaluate_glue(model, tok, "sst2", [Record(task="sst2", id="y", text="fine")])
