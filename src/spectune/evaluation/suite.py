"""Score a trained model on a task's test carve-out, by task family and protocol; the dict goes to eval_results.json.

GLUE: :func:`evaluate_glue` (accuracy; F1 for MRPC/QQP; Matthews for CoLA; Pearson/Spearman for STS-B).
Commonsense: ``likelihood`` = log-likelihood multiple choice (acc, acc_norm), ``generation`` = the LLM-Adapters
protocol (4-beam, 32 new tokens, first label-word match, exact match) with LLM-Adapters' *evaluation* template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spectune.data.llm_adapters import generate_eval_prompt
from spectune.data.records import Record
from spectune.data.tasks import TaskSplits
from spectune.evaluation.classification import evaluate_glue
from spectune.evaluation.generation import evaluate_generation
from spectune.evaluation.likelihood import score_multiple_choice

PROTOCOL_METRIC = {"likelihood": "accuracy", "generation": "exact_match"}


def eval_prompt(record: Record) -> str:
    """LLM-Adapters' evaluation prompt (``commonsense_evaluate.py``), not the training one."""
    return generate_eval_prompt(record.instruction, record.input)


def evaluate_commonsense(model: Any, tokenizer: Any, task: str, records: Sequence[Record], protocols: Sequence[str],
                         batch_size: int, max_length: int, num_beams: int, max_new_tokens: int) -> dict[str, Any]:
    """Score one commonsense task with each requested protocol."""
    res: dict[str, Any] = {"n": len(records)}
    for protocol in protocols:
        if protocol == "likelihood":
            # Record.choices already carry lm-eval's leading space.
            mc = score_multiple_choice(model, tokenizer, records, batch_size=batch_size, target_delimiter="",
                                       progress=True)
            res.update(accuracy=mc.accuracy, acc_norm=mc.acc_norm)
        elif protocol == "generation":
            gen = evaluate_generation(model, tokenizer, records, prompt_fn=eval_prompt, task=task,
                                      batch_size=max(1, batch_size // num_beams), num_beams=num_beams,
                                      max_new_tokens=max_new_tokens)
            res.update(exact_match=gen.accuracy, generation_seconds=gen.seconds)
        else:
            raise ValueError(f"Unknown evaluation protocol '{protocol}'; use likelihood and/or generation.")
    return res


def evaluate_splits(model: Any, tokenizer: Any, splits: TaskSplits, protocols: Sequence[str], batch_size: int = 32,
                    max_length: int = 128, num_beams: int = 4, max_new_tokens: int = 32) -> dict[str, Any]:
    """Score every test list of ``splits``; add ``primary`` (metric name and value, averaged over sub-tasks)."""
    out: dict[str, Any] = {}
    if splits.spec.family == "glue":
        for task, records in splits.tests().items():
            out[task] = {**evaluate_glue(model, tokenizer, task, records, batch_size=batch_size,
                                         max_length=max_length, progress=True), "n": len(records)}
        metric = splits.spec.metric
    else:
        for task, records in splits.tests().items():
            out[task] = evaluate_commonsense(model, tokenizer, task, records, protocols, batch_size, max_length,
                                             num_beams, max_new_tokens)
        metric = PROTOCOL_METRIC[protocols[0]]
    values = [v[metric] for v in out.values() if metric in v]
    out["primary"] = {"metric": metric, "value": float(np.mean(values)) if values else None,
                      "tasks": sorted(k for k in out if k != "primary")}
    return out
