"""Full GLUE from the Hugging Face hub (``nyu-mll/glue``) or a local copy of it.

Train split for training, validation for test (MNLI: ``validation_matched``); GLUE's test labels are hidden.
Off-line (``HF_HUB_OFFLINE=1``) a hub load fails at once, before any network call, naming the embedded GLUE tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spectune.data.errors import DataUnavailableError, hub_offline
from spectune.data.records import Record
from spectune.errors import DataFormatError

HUB_DATASET = "nyu-mll/glue"
EMBEDDED_GLUE = ("sst2", "rte", "mrpc")

# task -> (first text column, second text column or None)
COLUMNS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
}


def split_name(task: str, part: str) -> str:
    """The GLUE split used for ``part`` ("train" or "test"): train, or validation (MNLI: validation_matched)."""
    if part == "train":
        return "train"
    if part == "test":
        return "validation_matched" if task == "mnli" else "validation"
    raise ValueError(f"part must be 'train' or 'test', got {part!r}")


def _check(task: str) -> None:
    if task not in COLUMNS:
        raise ValueError(f"Unknown GLUE task '{task}'. Known: {', '.join(COLUMNS)}.")


def offline_message(task: str) -> str:
    """The error text for a hub GLUE task requested while off-line."""
    return (
        f"GLUE task '{task}' comes from the Hugging Face hub ({HUB_DATASET}), but HF_HUB_OFFLINE is set, so it will "
        f"not be downloaded. GLUE tasks embedded offline: {', '.join(EMBEDDED_GLUE)} (select with "
        "task.source=embedded; they train on a seeded carve-out of the validation set). Or use a local copy with "
        "task.source=local task.path=/path/to/glue, or unset HF_HUB_OFFLINE on a machine with network access."
    )


def to_records(task: str, rows: Any) -> list[Record]:
    """Convert GLUE rows (a ``datasets.Dataset`` or list of dicts) to Records; STS-B labels stay float."""
    _check(task)
    first, second = COLUMNS[task]
    out = []
    for i, row in enumerate(rows):
        label = float(row["label"]) if task == "stsb" else int(row["label"])
        pair = row[second] if second else None
        out.append(Record(task=task, id=str(i), label=label, text=row[first], text_pair=pair))
    return out


def load_glue_hub(task: str, split: str) -> list[Record]:
    """``datasets.load_dataset("nyu-mll/glue", task, split=split)`` as Records (``id`` = row index).

    Raises :class:`DataUnavailableError` at once when off-line, and wraps download failures in it.
    """
    _check(task)
    if hub_offline():
        raise DataUnavailableError(offline_message(task))
    import datasets

    try:
        ds = datasets.load_dataset(HUB_DATASET, task, split=split)
    except Exception as e:  # network errors, missing split
        raise DataUnavailableError(
            f"Could not load {HUB_DATASET}/{task} split '{split}' ({type(e).__name__}: {e}). "
            f"Embedded GLUE tasks that need no network: {', '.join(EMBEDDED_GLUE)} (task.source=embedded)."
        ) from e
    return to_records(task, ds)


def load_glue_local(task: str, split: str, path: str | Path) -> list[Record]:
    """GLUE from a local copy: a ``DatasetDict.save_to_disk`` folder (of this task, or holding ``<task>/``), or a
    local clone of the ``nyu-mll/glue`` dataset repository (read with ``datasets.load_dataset(path, task)``)."""
    _check(task)
    import datasets

    p = Path(path).expanduser()
    if not p.exists():
        raise DataUnavailableError(f"task.path={p} does not exist (expected a local copy of GLUE '{task}').")
    try:
        for folder in (p / task, p):
            if (folder / "dataset_dict.json").is_file():
                return to_records(task, datasets.load_from_disk(str(folder))[split])
        return to_records(task, datasets.load_dataset(str(p), task, split=split))
    except (KeyError, ValueError, OSError, FileNotFoundError) as err:
        raise DataFormatError(f"task.path={p} is not a readable local GLUE '{task}' copy with a '{split}' split "
                              f"({type(err).__name__}: {err}). Expected a DatasetDict.save_to_disk folder (of the task "
                              "or holding <task>/) or a clone of nyu-mll/glue.") from None
