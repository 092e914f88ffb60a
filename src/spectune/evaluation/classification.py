"""Sentence(-pair) classification with an encoder and its GLUE score.

Protocol of the GLUE fine-tuning recipes that LoRA-Dash's Table 2 follows (AdaLoRA's NLU scripts, after
HF ``run_glue.py``): each example is ``text`` (and ``text_pair``) encoded together, truncated to ``max_length``
tokens; the prediction is the argmax of the logits, or the single logit for a regression head (STS-B); the
metrics are :func:`spectune.evaluation.glue_metrics.glue_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from spectune.data.records import Record
from spectune.evaluation.glue_metrics import glue_metrics


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _is_regression(model: Any) -> bool:
    config = getattr(model, "config", None)
    return getattr(config, "problem_type", None) == "regression" or getattr(config, "num_labels", 2) == 1


def predict_sequence_classification(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = False,
) -> list[int] | list[float]:
    """Predict each record: a class id (argmax of the logits), or a float for a one-output regression head.

    Records are batched in order of token length (less padding); predictions come back in the input order.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    for r in records:
        if r.text is None:
            raise ValueError(f"Record {r.task}/{r.id} has no `text` to classify.")
    texts = [r.text for r in records]
    pairs = [r.text_pair for r in records]
    has_pair = any(p is not None for p in pairs)
    if has_pair and any(p is None for p in pairs):
        raise ValueError("Either every record has a text_pair or none does.")
    lengths = [len(ids) for ids in tokenizer(texts, pairs if has_pair else None, truncation=True,
                                             max_length=max_length)["input_ids"]]
    order = sorted(range(len(records)), key=lambda i: -lengths[i])
    regression = _is_regression(model)
    device = _model_device(model)
    out: list[Any] = [None] * len(records)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(records), desc="classify", unit="example", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], [pairs[i] for i in idx] if has_pair else None,
                            truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(device)
            with torch.inference_mode():
                logits = model(**enc).logits.float()
            values = logits[:, 0].tolist() if regression else logits.argmax(dim=-1).tolist()
            for i, v in zip(idx, values, strict=True):
                out[i] = float(v) if regression else int(v)
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out


def evaluate_glue(
    model: Any,
    tokenizer: Any,
    task: str,
    records: Sequence[Record],
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = False,
) -> dict[str, float]:
    """Predict ``records`` and score them with GLUE ``task``'s metrics (see :mod:`.glue_metrics`)."""
    if any(r.label is None for r in records):
        raise ValueError("Every record needs a gold `label` to be scored.")
    predictions = predict_sequence_classification(model, tokenizer, records, batch_size=batch_size,
                                                  max_length=max_length, progress=progress)
    return glue_metrics(task, predictions, [r.label for r in records])
