"""Prompts, rewards and validation of Transformer²'s classification expert (task ``t2_cls``).

Transformer² (Sun, Cetin, Tang 2025, ICLR 2025, §3.2, "classification expert"): an SVF expert trained with the same
RL recipe (reward +1 for the right ``\\boxed{domain}``, −1 otherwise) to classify a query into the experts' domains,
then used for the first pass (official: github:SakanaAI/self-adaptive-llms, commit 03a41ae, ``tasks/cls.py``,
``ClsTask``). The data (the experts' train / validation splits only, never a test split or an unseen task) are built
by :mod:`spectune.data.t2_cls` (re-exported here: :func:`classifier_data`, :class:`ClassifierData`, ...), which is
also the registered task ``t2_cls`` of ``python -m spectune.train`` (``task=t2/cls``; ``task.domains`` chooses the
expert tasks and their domains). The prompt is exactly the first pass's
(:func:`spectune.adaptation.classify.classification_prompt`), the gold completion ``Classification:
\\boxed{<domain>}`` (the format the official prompt asks for; used for next-token training and gold bits per byte).

:class:`ClassifierRewardTask` is the reward task of the repo's REINFORCE loop (the same interface as its
``T2RewardTask``); ``spectune.training.reinforce.reward_task("t2_cls", tok)`` returns it, so
``python -m spectune.train model=smollm2 method=svf task=t2/cls train.objective=reinforce`` trains the classifier and
``python -m spectune.adapt strategy=cls_expert cls_expert=<that run folder> ...`` uses it (docs/adapt.md).
:func:`write_classifier_data` writes the records, prompts and targets as JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spectune.adaptation.classify import classification_prompt, domain_of, extract_classification, query_text
from spectune.data.records import Record
from spectune.data.t2_cls import (
    CLS_TASK,
    DEFAULT_DOMAINS,
    ClassifierData,
    check_domains,
    classifier_data,
    gold_completion,
)
from spectune.io import write_text_atomic


def classifier_prompt(record: Record, tokenizer: Any, chat_template: str | None = None) -> str:
    """The prompt a classifier record is trained and used on (the first pass's)."""
    return classification_prompt(query_text(record), tokenizer, chat_template)


def classifier_sft_pair(record: Record, tokenizer: Any, chat_template: str | None = None) -> tuple[str, str]:
    """``(prompt, target)`` for next-token training: the first-pass prompt and ``Classification: \\boxed{...}``."""
    return classifier_prompt(record, tokenizer, chat_template), record.output or gold_completion(record.answer or "")


def classifier_correct(records: Sequence[Record], completions: Sequence[str]) -> list[bool]:
    """Whether each completion's first ``\\boxed{}`` names the record's domain (the official ``correct``)."""
    if len(records) != len(completions):
        raise ValueError(f"{len(records)} records but {len(completions)} completions.")
    return [domain_of(c) == r.answer for r, c in zip(records, completions, strict=True)]


def classifier_rewards(records: Sequence[Record], completions: Sequence[str]) -> list[float]:
    """REINFORCE rewards of the classifier: +1.0 right domain, −1.0 otherwise (the official ``get_rewards``)."""
    return [1.0 if ok else -1.0 for ok in classifier_correct(records, completions)]


class ClassifierRewardTask:
    """The classifier as a reward task of ``spectune.training.reinforce`` (``prompts``, ``rewards``, ``validate``,
    ``metric``): the first pass's prompt, ±1 for the right ``\\boxed{domain}``, greedy validation accuracy with the
    gold completion's bits per byte beside it."""

    metric = "exact_match"

    def __init__(self, tokenizer: Any, chat_template: str | None = None):
        self.tokenizer, self.chat_template = tokenizer, chat_template

    def prompts(self, records: Sequence[Record]) -> list[str]:
        return [classifier_prompt(r, self.tokenizer, self.chat_template) for r in records]

    def rewards(self, records: Sequence[Record], completions: Sequence[str]) -> list[float]:
        return classifier_rewards(records, completions)

    def validate(self, model: Any, records: Sequence[Record], max_new_tokens: int, batch_size: int) -> dict[str, Any]:
        """Greedy accuracy (the selection score), mean reward and the gold completions' bits per byte."""
        from spectune.evaluation.likelihood import score_gold
        from spectune.evaluation.t2_scoring import generate_greedy

        prompts = self.prompts(records)
        completions = generate_greedy(model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size)
        correct = classifier_correct(records, completions)
        gold = score_gold(model, self.tokenizer, prompts, [r.output or "" for r in records], batch_size=batch_size)
        n = len(records)
        return {"n": n, "exact_match": sum(correct) / n, "mean_reward": sum(1.0 if c else -1.0 for c in correct) / n,
                "n_no_prediction": sum(extract_classification(c) is None for c in completions),
                "bits_per_byte": gold.bits_per_byte}


def write_classifier_data(data: ClassifierData, folder: str | Path, tokenizer: Any | None = None) -> Path:
    """Write ``train.jsonl``, ``valid.jsonl`` (records; with ``tokenizer`` also ``prompt`` and ``target``) and
    ``meta.json`` into ``folder`` (each file written atomically)."""
    folder = Path(folder)

    def lines(records: Sequence[Record]) -> str:
        rows = []
        for r in records:
            row = r.to_dict()
            if tokenizer is not None:
                row["prompt"], row["target"] = classifier_sft_pair(r, tokenizer)
            rows.append(json.dumps(row, ensure_ascii=False))
        return "\n".join(rows) + ("\n" if rows else "")

    write_text_atomic(folder / "train.jsonl", lines(data.train))
    write_text_atomic(folder / "valid.jsonl", lines(data.valid))
    write_text_atomic(folder / "meta.json", json.dumps(data.meta, indent=1) + "\n")
    return folder


__all__ = ["CLS_TASK", "DEFAULT_DOMAINS", "ClassifierData", "ClassifierRewardTask", "check_domains",
           "classifier_correct", "classifier_data", "classifier_prompt", "classifier_rewards", "classifier_sft_pair",
           "gold_completion", "write_classifier_data"]
