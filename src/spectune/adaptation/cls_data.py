"""Training data of Transformer²'s classification expert: the experts' own training prompts, labelled by domain.

Transformer² (Sun, Cetin, Tang 2025, ICLR 2025, §3.2, "classification expert"): an SVF expert trained with the same
RL recipe (reward +1 for the right ``\\boxed{domain}``, −1 otherwise) to classify a query into the experts' domains,
then used for the first pass. The official data (github:SakanaAI/self-adaptive-llms, commit 03a41ae,
``tasks/cls.py`` lines 131-197, ``ClsTask``) takes about 400 items each of GSM8K's *test* split (math), MBPP
(code) and ARC-Challenge's *test* split (reasoning), 4:1 train/test by position and the train part halved
even/odd into train/validation. ARC-Challenge is one of the unseen tasks the classifier is then evaluated on, so
the official classifier was trained on evaluation items.

Here the classifier's items come only from the *expert* tasks (role "expert" in ``spectune.data.t2_tasks.T2``:
GSM8K → math, MBPP → code, ARC-Easy → reasoning by default), from their train split (classifier train) and
validation split (classifier validation), never from a test split and never from an unseen task; the test items of
the same carve-out are listed in the metadata as excluded. The prompt is exactly the first pass's
(:func:`spectune.adaptation.classify.classification_prompt`), the gold completion ``Classification:
\\boxed{<domain>}`` (the format the official prompt asks for; used for next-token training and gold bits per byte).

Records (``task = "t2_cls"``): ``id`` = ``<source task>:<source id>``, ``instruction`` = the source task's user turn,
``output`` = the gold completion, ``answer`` = the domain, ``label`` = the domain's index in :data:`DOMAINS`.
:class:`ClassifierRewardTask` is the reward task of the repo's REINFORCE loop
(``spectune.training.reinforce.train_reinforce(model, tok, method, data.train, data.valid, ClassifierRewardTask(tok),
RLSettings(...))``: the same interface as its ``T2RewardTask``), so an SVF classifier trains from Python now; training
it through ``python -m spectune.train`` needs the task registered there (``t2_cls`` in ``spectune.data.tasks`` and
``reward_task``). :func:`write_classifier_data` writes the records, prompts and targets as JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectune.adaptation.classify import classification_prompt, domain_of, extract_classification, query_text
from spectune.adaptation.settings import DOMAINS
from spectune.data.records import Record
from spectune.data.t2_tasks import load_t2, t2_task
from spectune.io import write_text_atomic

CLS_TASK = "t2_cls"
#: The experts' training tasks and their domains (Transformer²'s three experts).
DEFAULT_DOMAINS: dict[str, str] = {"t2_gsm8k": "math", "t2_mbpp": "code", "t2_arc_easy": "reasoning"}


def gold_completion(domain: str) -> str:
    """The completion the classifier should give: the official prompt's format, ``Classification: \\boxed{...}``."""
    return f"Classification: \\boxed{{{domain}}}"


@dataclass
class ClassifierData:
    """The classifier's ``train`` and ``valid`` records and ``meta`` (per source task: split sizes, indices, origin,
    and the test indices left out)."""

    train: list[Record]
    valid: list[Record]
    meta: dict[str, Any] = field(default_factory=dict)


def classifier_data(domains: Mapping[str, str] | None = None, source: str = "embedded", n_train: int | None = 64,
                    n_valid: int | None = 16, n_test: int | None = 32, seed: int = 0) -> ClassifierData:
    """Classifier records from the train / validation splits of the expert tasks in ``domains`` ({task: domain}).

    ``n_train`` / ``n_valid`` / ``n_test`` / ``seed`` are the expert runs' task sizes and seed (defaults: the smoke
    configs ``conf/task/t2/{gsm8k,mbpp,arc_easy}.yaml``), so the carve-out is theirs and the experts' test items stay
    out. Refuses unseen (evaluation) tasks and unknown domains.
    """
    domains = dict(DEFAULT_DOMAINS if domains is None else domains)
    if not domains:
        raise ValueError("classifier_data needs at least one {task: domain}.")
    train: list[Record] = []
    valid: list[Record] = []
    meta: dict[str, Any] = {"task": CLS_TASK, "source": source, "seed": seed, "domains": dict(domains),
                            "requested": {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}, "sources": {}}
    for task, domain in domains.items():
        spec = t2_task(task)
        if spec.role != "expert":
            raise ValueError(f"{spec.name} is an unseen (evaluation) task of Transformer²; the classifier is trained "
                             "on the experts' training tasks only (the official classifier's data included "
                             "ARC-Challenge test items; this builder refuses them).")
        if domain not in DOMAINS:
            raise ValueError(f"Domain '{domain}' of {spec.name} is not one of {list(DOMAINS)}.")
        tr, va, te, m = load_t2(spec.name, source, n_train, n_valid, n_test, seed)
        label = DOMAINS.index(domain)
        for part, out in ((tr, train), (va, valid)):
            out.extend(Record(task=CLS_TASK, id=f"{spec.name}:{r.id}", label=label, instruction=query_text(r),
                              input="", context="", output=gold_completion(domain), answer=domain) for r in part)
        meta["sources"][spec.name] = {"domain": domain, "n_train": len(tr), "n_valid": len(va),
                                      "train_indices": m["train_indices"], "valid_indices": m["valid_indices"],
                                      "excluded_test_indices": m["test_indices"], "origin": m["origin"]}
    meta.update(n_train=len(train), n_valid=len(valid))
    return ClassifierData(train, valid, meta)


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


__all__ = ["CLS_TASK", "DEFAULT_DOMAINS", "ClassifierData", "ClassifierRewardTask", "classifier_correct",
           "classifier_data", "classifier_prompt", "classifier_rewards", "classifier_sft_pair", "gold_completion",
           "write_classifier_data"]
