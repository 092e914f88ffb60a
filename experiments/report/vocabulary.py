"""What tables call things: method names and labels from the method registry, model and task display names.

Method names and their display labels come from :mod:`spectune.methods` (``method_names()`` and
``REGISTRY[name].display``), the one list of methods; nothing in ``experiments/`` lists them again. Two row kinds
are not methods: :data:`BASE`, the untuned model's scores (``spectune.training.base_model``), and :data:`NOT_A_METHOD`,
a paper row that fine-tunes nothing (ChatGPT in LoRA-Dash's Table 1). The registry is imported on first use (it
imports torch and PEFT), so reading run folders alone stays light.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from typing import Any

BASE = "base"
NOT_A_METHOD = "-"
BASE_LABEL = "base model (no fine-tuning)"

# Other spellings of registered methods met in run files and paper CSVs (keys: registry names; compared after
# lower-casing and dropping everything but letters and digits, so "LoRA-Dash" already meets "lora_dash").
SPELLINGS = {
    "full": ("ft", "fft", "fullft", "fullyft", "fullfinetune", "fullfinetuning"),
    "plora": ("periodiclora",),
}

MODEL_DISPLAY = {"minilm": "MiniLM", "all-minilm-l6-v2": "MiniLM", "sentence-transformers/all-minilm-l6-v2": "MiniLM",
                 "smollm2": "SmolLM2", "smollm2-135m-instruct": "SmolLM2",
                 "huggingfacetb/smollm2-135m-instruct": "SmolLM2"}
# How captions name a scale (conf/scale/<scale>.yaml's scale_name).
SCALE_DISPLAY = {"smoke": "smoke", "gpu": "GPU", "paper": "paper"}
TASK_DISPLAY = {"sst2": "SST-2", "rte": "RTE", "mrpc": "MRPC", "cola": "CoLA", "qqp": "QQP", "qnli": "QNLI",
                "mnli": "MNLI", "stsb": "STS-B", "boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA",
                "hellaswag": "HellaS.", "winogrande": "WinoG.", "arc_e": "ARC-e", "arc_c": "ARC-c", "obqa": "OBQA"}


@cache
def _registry() -> dict[str, Any]:
    from spectune.methods import REGISTRY, method_names

    return {name: REGISTRY[name] for name in method_names()}


def method_names() -> list[str]:
    """The registered method names, in registration order (``full``, ``lora``, ``lora_dash``, ``plora`` …)."""
    return list(_registry())


def method_order() -> tuple[str, ...]:
    """Row order of a table: the base model, then the methods in registration order."""
    return (BASE, *method_names())


def method_description(name: str) -> str:
    """The registry's one-line description of ``name`` (``KeyError`` for an unregistered name)."""
    return _registry()[name].description


def squash(name: str) -> str:
    """Lower case, letters and digits only: how spellings are compared."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def method_aliases() -> dict[str, str]:
    """Squashed spelling → registered name: every registered name and its :data:`SPELLINGS`."""
    aliases = {squash(name): name for name in method_names()}
    for name, spellings in SPELLINGS.items():
        if name in aliases.values():
            aliases.update({squash(s): name for s in spellings})
    return aliases


def has_rank(name: str | None) -> bool:
    """Whether a row of ``name`` has a rank: a registered method whose hyper-parameters include ``r`` (LoRA and its
    kin; not full fine-tuning), or an unregistered one (a paper's method); never the base model."""
    if name == BASE:
        return False
    entry = _registry().get(name or "")
    if entry is None:
        return True
    return entry.spec is not None and "r" in {f.name for f in dataclasses.fields(entry.spec)}


def display_method(name: str | None) -> str:
    """Display label of a method (the registry's, e.g. ``lora_dash`` → ``LoRA-Dash``); the base model's row label;
    unknown names unchanged."""
    if name == BASE:
        return BASE_LABEL
    entry = _registry().get(name or "")
    return entry.display if entry is not None else (name or "?")


def display_model(model: str | None) -> str:
    """Short display name of a model (``minilm`` → ``MiniLM``); unknown names unchanged."""
    if model is None:
        return "?"
    return MODEL_DISPLAY.get(model.lower(), model)


def display_task(task: str) -> str:
    """Display name of a canonical task (``sst2`` → ``SST-2``); unknown names unchanged."""
    return TASK_DISPLAY.get(task, task)


def display_scale(scale: str | None) -> str:
    """Display name of a scale (``gpu`` → ``GPU``; ``smoke``, ``paper`` unchanged); unknown names unchanged."""
    if scale is None:
        return "scale ?"
    return SCALE_DISPLAY.get(scale, scale)
