"""LLM-Adapters' real commonsense data and its prompt template (AGI-Edgerunners/LLM-Adapters).

- ``load_commonsense_170k``: ``ft-training_set/commonsense_170k.json`` (the 8 tasks' training mix), from a local
  file or downloaded from GitHub when the hub is on-line;
- ``load_llm_adapters_test``: the eight ``dataset/<Task>/test.json`` files;
- ``generate_prompt``: the Alpaca-style template, byte for byte as LLM-Adapters writes it, indentation quirk
  included. Its training form (``finetune.py``) and evaluation form (``commonsense_evaluate.py``) differ in
  whitespace, so both are here (``style="train"`` / ``style="eval"``).

Records read from these files carry the generative view (``instruction``, ``input``, ``output``, ``answer``) and
``label`` = the answer's index among the instruction's answer words; the log-likelihood view (``context`` /
``choices``) exists only for the embedded data, which keep the source columns.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Literal

from spectune.data import commonsense as cs
from spectune.data.errors import DataUnavailableError, hub_offline
from spectune.data.records import Record
from spectune.errors import DataFormatError

REPO = "AGI-Edgerunners/LLM-Adapters"
RAW_BASE = f"https://raw.githubusercontent.com/{REPO}/main"
COMMONSENSE_170K_PATH = "ft-training_set/commonsense_170k.json"
COMMONSENSE_170K_URL = f"{RAW_BASE}/{COMMONSENSE_170K_PATH}"

# spectune task name -> folder under LLM-Adapters' dataset/
TEST_FOLDERS: dict[str, str] = {
    "boolq": "boolq",
    "piqa": "piqa",
    "siqa": "social_i_qa",
    "hellaswag": "hellaswag",
    "winogrande": "winogrande",
    "arc_e": "ARC-Easy",
    "arc_c": "ARC-Challenge",
    "obqa": "openbookqa",
}

# --- the prompt template ----------------------------------------------------------------------------------------
# LLM-Adapters writes the template as an indented f-string, so every line after the first starts with 16 spaces.
# finetune.py (training) and commonsense_evaluate.py (evaluation) differ in whitespace:
#   training:   "request.  " (2 trailing spaces) without input, "request. " (1) with input; the blank lines inside
#               hold 16 spaces; the output follows "### Response:\n" + 16 spaces.
#   evaluation: "request. " (1 trailing space) without input, "request." (none) with input; the blank lines are
#               empty; the prompt ends with "### Response:\n" + 16 spaces.
# Built from explicit pieces so that no editor can strip the significant whitespace.
_IND = " " * 16
_NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)


def generate_prompt(
    instruction: str, input: str | None = None, output: str = "", *, style: Literal["train", "eval"] = "train"
) -> str:
    """LLM-Adapters' prompt, byte for byte.

    ``style="train"`` reproduces ``generate_prompt(data_point)`` of ``finetune.py`` (the text trained on, with
    ``output`` appended; ``output=""`` gives the user prompt that ``train_on_inputs=False`` masks).
    ``style="eval"`` reproduces ``generate_prompt(instruction, input)`` of ``commonsense_evaluate.py`` (the text a
    model is asked to continue; ``output`` must be empty). As there, ``input`` counts only when truthy.
    """
    if style == "train":
        if input:
            return (
                f"{_WITH_INPUT} \n\n{_IND}### Instruction:\n{_IND}{instruction}\n{_IND}\n"
                f"{_IND}### Input:\n{_IND}{input}\n{_IND}\n{_IND}### Response:\n{_IND}{output}"
            )
        return (
            f"{_NO_INPUT}  \n\n{_IND}### Instruction:\n{_IND}{instruction}\n{_IND}\n"
            f"{_IND}### Response:\n{_IND}{output}"
        )
    if style == "eval":
        if output:
            raise ValueError("The evaluation prompt ends at '### Response:'; pass output only with style='train'.")
        if input:
            return (
                f"{_WITH_INPUT}\n\n{_IND}### Instruction:\n{_IND}{instruction}\n\n"
                f"{_IND}### Input:\n{_IND}{input}\n\n{_IND}### Response:\n{_IND}"
            )
        return f"{_NO_INPUT} \n\n{_IND}### Instruction:\n{_IND}{instruction}\n\n{_IND}### Response:\n{_IND}"
    raise ValueError(f"style must be 'train' or 'eval', got {style!r}")


def generate_eval_prompt(instruction: str, input: str | None = None) -> str:
    """Shorthand for ``generate_prompt(instruction, input, style="eval")`` (commonsense_evaluate.py)."""
    return generate_prompt(instruction, input, style="eval")


# --- reading the files ------------------------------------------------------------------------------------------


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _offline_error(what: str, url: str, task_hint: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"{what} is not available here: HF_HUB_OFFLINE is set, so it will not be downloaded from {url}. "
        f"Use the embedded carve-out instead (task.source=embedded, no network needed), or point to a local copy of "
        f"LLM-Adapters with task.source=local task.path={task_hint}."
    )


def _download(url: str, what: str, task_hint: str) -> Path:
    """Fetch ``url`` once into the user cache (temp file, then rename); refused at once when off-line."""
    if hub_offline():
        raise _offline_error(what, url, task_hint)
    from spectune.paths import cache_dir

    if url.startswith(f"{RAW_BASE}/"):
        name = url.removeprefix(f"{RAW_BASE}/").replace("/", "__")
    else:
        name = f"{hashlib.sha256(url.encode()).hexdigest()[:12]}_{url.rsplit('/', 1)[-1]}"
    target = cache_dir() / "llm_adapters" / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (fixed https GitHub URL)
            data = resp.read()
    except Exception as e:  # network errors, 404
        raise DataUnavailableError(
            f"Could not download {what} from {url} ({type(e).__name__}: {e}). Use task.source=embedded (no network) "
            f"or a local copy with task.source=local task.path={task_hint}."
        ) from e
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (written into carve-out metadata for local / downloaded sources)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_170k(path_or_url: str | Path | None = None) -> Path:
    """Local file of ``commonsense_170k.json``: a file, a folder holding it (LLM-Adapters checkout or its
    ``ft-training_set``), or a URL / None (download, on-line only)."""
    if path_or_url is None or _is_url(str(path_or_url)):
        url = str(path_or_url or COMMONSENSE_170K_URL)
        return _download(url, "commonsense_170k.json", "/path/to/LLM-Adapters")
    p = Path(path_or_url).expanduser()
    for candidate in (p, p / "commonsense_170k.json", p / COMMONSENSE_170K_PATH):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"commonsense_170k.json not found at {p} (looked for the file itself, {p}/commonsense_170k.json and "
        f"{p}/{COMMONSENSE_170K_PATH}). Download it from https://github.com/{REPO} ({COMMONSENSE_170K_PATH}), "
        "or use the embedded carve-out with task.source=embedded."
    )


def resolve_test(task: str, path: str | Path | None = None) -> Path:
    """Local file of ``dataset/<Task>/test.json`` for ``task``: the file, an LLM-Adapters checkout, its
    ``dataset`` folder, or a URL / None (download, on-line only)."""
    if task not in TEST_FOLDERS:
        raise ValueError(f"Unknown LLM-Adapters commonsense task '{task}'. Known: {', '.join(TEST_FOLDERS)}.")
    rel = f"dataset/{TEST_FOLDERS[task]}/test.json"
    if path is None or _is_url(str(path)):
        url = str(path) if path else f"{RAW_BASE}/{rel}"
        return _download(url, f"LLM-Adapters' {rel}", "/path/to/LLM-Adapters")
    p = Path(path).expanduser()
    for candidate in (p, p / rel, p / TEST_FOLDERS[task] / "test.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{rel} not found under {p} (give an LLM-Adapters checkout, its dataset/ folder or the file itself). "
        "Or use the embedded carve-out with task.source=embedded."
    )


def _records(rows: list[dict[str, Any]], task: str, source: str) -> list[Record]:
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "instruction" not in row or "answer" not in row:
            raise DataFormatError(f"{source}: entry {i} lacks the LLM-Adapters keys instruction/input/output/answer "
                                  "(expected a JSON list of {instruction, input, output, answer} objects).")
        words = cs.answer_words(row["instruction"])
        answer = str(row["answer"])
        out.append(Record(
            task=task, id=str(i), label=words.index(answer) if answer in words else None,
            instruction=row["instruction"], input=row.get("input") or "",
            output=row.get("output") or cs.output_for(answer), answer=answer,
        ))
    return out


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path} is not valid JSON ({err}); expected a JSON list of LLM-Adapters entries "
                              "({instruction, input, output, answer} objects), as commonsense_170k.json.") from None
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of LLM-Adapters entries, got {type(rows).__name__}.")
    return rows


def load_commonsense_170k(path_or_url: str | Path | None = None) -> list[Record]:
    """LLM-Adapters' ``commonsense_170k.json`` as Records (``task="commonsense_170k"``, ``id`` = list index).

    ``path_or_url``: a local file or a folder holding it; or a URL / None for the GitHub raw file, downloaded
    into the user cache only when ``HF_HUB_OFFLINE`` is unset. Off-line, a non-local source raises
    :class:`DataUnavailableError` naming ``task.source=embedded`` and ``task.path=``.
    """
    path = resolve_170k(path_or_url)
    return _records(_read_json(path), "commonsense_170k", str(path))


def load_llm_adapters_test(task: str, path: str | Path | None = None) -> list[Record]:
    """LLM-Adapters' ``dataset/<Task>/test.json`` for ``task`` (boolq, piqa, siqa, hellaswag, winogrande, arc_e,
    arc_c, obqa) as Records (``id`` = list index). ``path`` as in :func:`resolve_test`."""
    file = resolve_test(task, path)
    return _records(_read_json(file), task, str(file))
