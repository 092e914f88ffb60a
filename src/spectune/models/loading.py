"""Load a causal LM or a sequence classifier (plus tokenizer) from a resolved folder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spectune.models.hub import resolve_model_path

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def _layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """Find the container of transformer blocks and the attribute holding it."""
    for path in ("model.layers", "bert.encoder.layer", "deberta.encoder.layer", "roberta.encoder.layer",
                 "encoder.layer", "layers"):
        obj: Any = model
        ok = True
        for part in path.split("."):
            if not hasattr(obj, part):
                ok = False
                break
            obj = getattr(obj, part)
        if ok and isinstance(obj, nn.ModuleList):
            parent = model
            for part in path.split(".")[:-1]:
                parent = getattr(parent, part)
            return parent, path.split(".")[-1]
    raise ValueError(f"Cannot find the transformer layers of {type(model).__name__} to cut.")


def truncate_layers(model: nn.Module, num_layers: int) -> nn.Module:
    """Keep the first ``num_layers`` blocks of ``model`` (real weights), in place; update the config to match."""
    parent, attr = _layer_list(model)
    layers = getattr(parent, attr)
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"model.num_layers={num_layers} must be between 1 and the model's {len(layers)} layers.")
    setattr(parent, attr, nn.ModuleList(list(layers)[:num_layers]))
    model.config.num_hidden_layers = num_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:num_layers]
    return model


def load_model_and_tokenizer(
    name_or_path: str,
    kind: str,
    num_labels: int | None = None,
    dtype: str = "float32",
    num_layers: int | None = None,
    revision: str | None = None,
) -> tuple[nn.Module, Any]:
    """Load ``name_or_path`` as ``kind`` ("causal_lm" or "sequence_classification") with its tokenizer.

    ``num_layers`` keeps only the first blocks (a real-weight cut for fast tests). The tokenizer gets a pad token
    (the EOS token) when it has none, and the model's config learns it.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"Unknown model.dtype '{dtype}'; choose one of {sorted(DTYPES)}.")
    path = resolve_model_path(name_or_path, revision=revision)
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if kind == "causal_lm":
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype])
    elif kind == "sequence_classification":
        if num_labels is None:
            raise ValueError("A sequence-classification model needs num_labels (set by the task config).")
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=num_labels, dtype=DTYPES[dtype],
            problem_type="regression" if num_labels == 1 else "single_label_classification",
        )
    else:
        raise ValueError(f"Unknown model kind '{kind}'; expected 'causal_lm' or 'sequence_classification'.")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if num_layers is not None:
        truncate_layers(model, num_layers)
    return model, tok
