"""Score a trained model on a task's test carve-out, by task family and protocol; the dict goes to eval_results.json.

GLUE: :func:`evaluate_glue` (accuracy; F1 for MRPC/QQP; Matthews for CoLA; Pearson/Spearman for STS-B).
Commonsense: ``likelihood`` = log-likelihood multiple choice (acc, acc_norm), ``generation`` = the LLM-Adapters
protocol (4-beam, 32 new tokens, first label-word match, exact match) with LLM-Adapters' *evaluation* template.
PeriodicLoRA's benchmarks (family ``plora``, likelihood only): MMLU ``accuracy`` / ``acc_norm`` over the four answer
texts (lm-eval's ``mmlu_continuation``) and ``accuracy_letter`` over " A".." D" (lm-eval's ``mmlu``); GSM8K the gold
solution's ``nll_per_token`` (nats) and ``bits_per_byte`` given the zero-shot question (lower is better; not exact
match).

Transformer²'s tasks (family ``t2``, :mod:`.t2_scoring`): gold bits per byte always; with ``generation`` also greedy
completions (``max_new_tokens``; the official budget is 512, MATH 1024) checked by the official rule: ``exact_match``
(accuracy, pass@1 for MBPP/HumanEval, code run only in the sandbox of :mod:`.execution`). Primary: ``exact_match``
with generation, else ``bits_per_byte``.

``primary`` is the spec's metric averaged over the tasks that report it (``mmlu_gsm8k``: MMLU accuracy alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spectune.data import mmlu
from spectune.data.llm_adapters import generate_eval_prompt
from spectune.data.records import Record
from spectune.data.tasks import TaskSplits
from spectune.evaluation.classification import evaluate_glue
from spectune.evaluation.generation import evaluate_generation
from spectune.evaluation.likelihood import score_gold, score_multiple_choice

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


def evaluate_plora(model: Any, tokenizer: Any, task: str, records: Sequence[Record],
                   batch_size: int) -> dict[str, Any]:
    """Score MMLU (log-likelihood multiple choice, text and letter forms) or GSM8K (gold-solution likelihood)."""
    res: dict[str, Any] = {"n": len(records)}
    if not records:
        return res
    if task == "mmlu":
        # Record.choices already carry lm-eval's leading space.
        text = score_multiple_choice(model, tokenizer, records, batch_size=batch_size, progress=True)
        letters = score_multiple_choice(model, tokenizer, [mmlu.letter_view(r) for r in records],
                                        batch_size=batch_size, progress=True)
        res.update(accuracy=text.accuracy, acc_norm=text.acc_norm, accuracy_letter=letters.accuracy)
    elif task == "gsm8k":
        gold = score_gold(model, tokenizer, [r.context for r in records], [r.choices[0] for r in records],
                          batch_size=batch_size, progress=True)
        res.update(nll_per_token=gold.nll_per_token, bits_per_byte=gold.bits_per_byte, n_tokens=gold.n_tokens,
                   n_bytes=gold.n_bytes)
    else:
        raise ValueError(f"No PeriodicLoRA-benchmark scorer for task '{task}'; known: mmlu, gsm8k.")
    return res


def evaluate_splits(model: Any, tokenizer: Any, splits: TaskSplits, protocols: Sequence[str], batch_size: int = 32,
                    max_length: int = 128, num_beams: int = 4, max_new_tokens: int = 32) -> dict[str, Any]:
    """Score every test list of ``splits``; add ``primary`` (metric name and value, averaged over sub-tasks).

    A task without test items (Transformer²'s classification expert, ``t2_cls``: train / validation only) gets
    ``{"n": 0}`` and a ``primary`` value of None; nothing is loaded or generated.
    """
    if not splits.test:
        return {**{task: {"n": 0} for task in splits.tests()},
                "primary": {"metric": splits.spec.metric, "value": None, "tasks": []}}
    out: dict[str, Any] = {}
    if splits.spec.family == "glue":
        for task, records in splits.tests().items():
            out[task] = {**evaluate_glue(model, tokenizer, task, records, batch_size=batch_size,
                                         max_length=max_length, progress=True), "n": len(records)}
        metric = splits.spec.metric
    elif splits.spec.family == "t2":
        from spectune.evaluation.t2_scoring import evaluate_t2, primary_metric

        for task, records in splits.tests().items():
            out[task] = evaluate_t2(model, tokenizer, task, records, protocols, batch_size=batch_size,
                                    max_new_tokens=max_new_tokens, progress=True)
        metric = primary_metric(protocols)
    elif splits.spec.family == "instruct":  # likelihood only (config.validate refuses generation for this family)
        for task, records in splits.tests().items():
            out[task] = evaluate_plora(model, tokenizer, task, records, batch_size)
        metric = splits.spec.metric
    else:
        for task, records in splits.tests().items():
            out[task] = evaluate_commonsense(model, tokenizer, task, records, protocols, batch_size, max_length,
                                             num_beams, max_new_tokens)
        metric = PROTOCOL_METRIC[protocols[0]]
    scored = sorted(k for k, v in out.items() if metric in v)
    out["primary"] = {"metric": metric, "value": float(np.mean([out[k][metric] for k in scored])) if scored else None,
                      "tasks": scored}
    return out
