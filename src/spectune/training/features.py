"""Records → tokenised training features, for encoders (classification) and causal LMs (LLM-Adapters format)."""

from __future__ import annotations

from collections.abc import Sequence
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
