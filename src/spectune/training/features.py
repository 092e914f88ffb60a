"""Records → tokenised training features, for encoders (classification) and causal LMs (LLM-Adapters format)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from spectune.data.records import Record


def encoder_features(records: Sequence[Record], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    """``text`` / ``text_pair`` → ``input_ids``, ``attention_mask`` (+ ``token_type_ids``) and ``labels``."""
    feats = []
    for r in records:
        enc = tokenizer(r.text, r.text_pair, truncation=True, max_length=max_length)
        feats.append({**{k: list(v) for k, v in enc.items()}, "labels": r.label})
    return feats


def causal_lm_features(records: Sequence[Record], tokenizer: Any, max_length: int,
                       train_on_inputs: bool = True) -> list[dict[str, Any]]:
    """LLM-Adapters training format: ``generate_prompt(instruction, input, output)`` + EOS, cut at ``max_length``.

    As LLM-Adapters' ``finetune.py``: the full prompt is the target when ``train_on_inputs`` (their default), else
    the prompt tokens are masked with -100 and only the response is learned.
    """
    from spectune.data.llm_adapters import generate_prompt

    feats = []
    for r in records:
        if r.instruction is None or r.output is None:
            raise ValueError(f"Record {r.task}/{r.id} has no instruction/output: it cannot train a causal LM.")
        full = generate_prompt(r.instruction, r.input, r.output)
        ids = tokenizer(full, truncation=True, max_length=max_length - 1)["input_ids"] + [tokenizer.eos_token_id]
        labels = list(ids)
        if not train_on_inputs:
            n_prompt = len(tokenizer(generate_prompt(r.instruction, r.input), truncation=True,
                                     max_length=max_length)["input_ids"])
            labels[:n_prompt] = [-100] * min(n_prompt, len(labels))
        feats.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return feats


def t2_features(records: Sequence[Record], tokenizer: Any, max_length: int, train_on_inputs: bool = False,
                pair: Callable[[Record, Any], tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Transformer²'s next-token objective (the paper's SFT ablation, Table 4 rows 4, 6, 7): the official prompt
    (:func:`spectune.data.t2_tasks.build_prompt`: chat template, system text, pre-fill) then the gold continuation
    (:func:`~spectune.data.t2_tasks.gold_continuation`) and EOS.

    Tokenised as the gold bits per byte are scored (:func:`spectune.evaluation.likelihood.encode_pair`, no added
    special tokens: the template has its own), so the tokens trained on are the tokens scored. The prompt is masked
    with -100 unless ``train_on_inputs``. A pair longer than ``max_length`` loses the end of its target; a prompt that
    leaves no target token within ``max_length`` is an error naming the length needed. ``pair(record, tokenizer)``
    gives another ``(prompt, target)`` (Transformer²'s classification expert:
    :func:`spectune.adaptation.cls_data.classifier_sft_pair`); default :func:`~spectune.data.t2_tasks.sft_pair`.
    """
    from spectune.data.t2_tasks import sft_pair
    from spectune.evaluation.likelihood import encode_pair

    feats, short = [], []
    for r in records:
        prompt, target = (pair or sft_pair)(r, tokenizer)
        p_ids, t_ids = encode_pair(tokenizer, prompt, target)
        t_ids = [*t_ids, tokenizer.eos_token_id]
        if len(p_ids) >= max_length:
            short.append(len(p_ids))
            continue
        ids = (p_ids + t_ids)[:max_length]
        labels = list(ids) if train_on_inputs else [-100] * len(p_ids) + ids[len(p_ids):]
        feats.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    if short:
        raise ValueError(f"train.max_length={max_length} leaves no target token for {len(short)} of {len(records)} "
                         f"{records[0].task} records (prompts of up to {max(short)} tokens); set train.max_length >= "
                         f"{max(short) + 64} (the prompt, the gold answer's first tokens and EOS).")
    return feats
