"""Read run folders (docs/run-folder.md) into :class:`RunRecord` objects; never trains, never imports training code.

A run folder is any folder holding one of the run files (``summary.json``, ``config.yaml``, ``environment.json``,
``data_indices.json``, ``metrics.jsonl``, ``eval_results.json``). Its status:

- ``finished`` / ``failed``: what ``summary.json`` says;
- ``incomplete``: no ``summary.json`` yet (a run in progress, killed, or resumable);
- ``malformed``: ``summary.json`` exists but cannot be read or has no valid status.

Nothing here raises on a bad run folder: what is missing or unreadable is written to :attr:`RunRecord.problems`,
and the folder is still listed, so a table can mark its cell instead of silently dropping it.

Identity (model, method, task, seed, rank, scale) comes from ``summary.json``, else from ``config.yaml``, else from
the folder path ``…/<model>/<method>/<task>/seed<seed>``. Method and task names are canonicalised
(:func:`canonical_method`, :func:`canonical_task`) so that ``glue/sst2``, ``sst-2`` and ``SST2`` meet in one cell.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.report.vocabulary import has_rank, method_aliases, squash

FINISHED = "finished"
FAILED = "failed"
INCOMPLETE = "incomplete"
MALFORMED = "malformed"
STATUSES = (FINISHED, FAILED, INCOMPLETE, MALFORMED)

RUN_FILES = ("summary.json", "config.yaml", "environment.json", "data_indices.json", "metrics.jsonl",
             "eval_results.json")

_TASK_ALIASES = {
    "sst2": "sst2", "rte": "rte", "mrpc": "mrpc", "cola": "cola", "qqp": "qqp", "qnli": "qnli", "mnli": "mnli",
    "stsb": "stsb", "boolq": "boolq", "piqa": "piqa", "siqa": "siqa", "socialiqa": "siqa", "hellaswag": "hellaswag",
    "winogrande": "winogrande", "arce": "arc_e", "arceasy": "arc_e", "arcc": "arc_c", "arcchallenge": "arc_c",
    "obqa": "obqa", "openbookqa": "obqa", "gsm8k": "gsm8k", "mbpp": "mbpp", "humaneval": "humaneval", "math": "math",
}

_SEED_DIR = re.compile(r"seed[_-]?(\d+)")
_LABEL_RANK = re.compile(r"(.+?)[-_]r(\d+)")


def canonical_method(name: Any) -> str | None:
    """Canonical method name: a registered method's name (``full`` for any full fine-tuning spelling, ``lora_dash``
    for ``LoRA-Dash`` …; :func:`experiments.report.vocabulary.method_aliases`).

    Unknown names (``base``, a paper's other methods) are returned lower-cased with ``-`` as ``_``; ``None``/empty
    gives ``None``.
    """
    if name is None or str(name).strip() == "":
        return None
    text = str(name).strip().lower().replace("-", "_")
    return method_aliases().get(squash(text), text)


def canonical_task(name: Any) -> str | None:
    """Canonical task name: the last path component, lower-case, with GLUE/commonsense spellings unified.

    ``glue/sst2``, ``glue_sst2``, ``SST-2`` → ``sst2``; ``commonsense/arc_easy`` → ``arc_e``. Unknown names are
    returned lower-cased (last path component); ``None``/empty gives ``None``.
    """
    if name is None or str(name).strip() == "":
        return None
    last = str(name).strip().lower().replace("\\", "/").rstrip("/").split("/")[-1]
    key = re.sub(r"[^a-z0-9]", "", last)
    if key in _TASK_ALIASES:
        return _TASK_ALIASES[key]
    for prefix in ("glue", "commonsense", "superglue"):
        if key.startswith(prefix) and key[len(prefix):] in _TASK_ALIASES:
            return _TASK_ALIASES[key[len(prefix):]]
    return last


def _as_int(value: Any) -> int | None:
    """An int from an int or an integer-looking string/float; otherwise ``None`` (bools are not ints here)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    return None


def _as_float(value: Any) -> float | None:
    """A finite float from a number; ``None`` for anything else (bools, strings, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _name_of(node: Any) -> str | None:
    """The name of a config group: the node itself if a string, else its ``name``-like key."""
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping):
        for key in ("name", "short_name", "id", "name_or_path"):
            if isinstance(node.get(key), str):
                return node[key]
    return None


def metric_from(entry: Any, name: str) -> float | None:
    """Value of metric ``name`` in a flat dict, also under the HF prefixes ``eval_``/``test_``; else ``None``."""
    if not isinstance(entry, Mapping):
        return None
    for key in (name, f"eval_{name}", f"test_{name}"):
        value = _as_float(entry.get(key))
        if value is not None:
            return value
    return None


@dataclass
class RunRecord:
    """One run folder as read from disk: its status, identity, the parsed files and what was wrong with them."""

    path: Path
    status: str
    model: str | None = None
    method: str | None = None
    task: str | None = None
    scale: str | None = None
    seed: int | None = None
    rank: int | None = None
    commit: str | None = None
    runtime_s: float | None = None
    error: str | None = None
    summary: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    eval_results: dict[str, Any] | None = None
    data_indices: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def placeable(self) -> bool:
        """Whether the run can be put in a table cell (model, method and task are known)."""
        return self.model is not None and self.method is not None and self.task is not None

    def metric(self, name: str, task: str | None = None) -> float | None:
        """Value of metric ``name`` for ``task`` (default: the run's task) as stored (fraction or %), or ``None``.

        Looks in ``eval_results.json`` (``{task: {metric: value}}``, task names compared canonically; a single
        task entry is used when the task is not named; then ``primary`` if it names this metric), then in
        ``summary.json``'s ``metrics`` (flat, or keyed by task).
        """
        want = canonical_task(task or self.task)
        results = self.eval_results
        if isinstance(results, Mapping):
            entries = {canonical_task(k): v for k, v in results.items() if k != "primary" and isinstance(v, Mapping)}
            entry = entries.get(want) if want is not None else None
            if entry is None and len(entries) == 1 and (want is None or want == canonical_task(self.task)):
                entry = next(iter(entries.values()))
            value = metric_from(entry, name)
            if value is not None:
                return value
            primary = results.get("primary")
            if isinstance(primary, Mapping) and primary.get("metric") in (name, f"eval_{name}"):
                value = _as_float(primary.get("value"))
                if value is not None and (want is None or want == canonical_task(self.task)):
                    return value
        metrics = (self.summary or {}).get("metrics")
        if isinstance(metrics, Mapping):
            by_task = {canonical_task(k): v for k, v in metrics.items() if isinstance(v, Mapping)}
            value = metric_from(by_task.get(want), name) if want is not None else None
            if value is None and (want is None or want == canonical_task(self.task)):
                value = metric_from(metrics, name)
            return value
        return None


def _read(path: Path, problems: list[str], expected: bool) -> Any:
    """Parse a JSON or YAML file; record a problem (never raise) if it is missing-but-expected or unreadable."""
    if not path.is_file():
        if expected:
            problems.append(f"{path.name}: missing")
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        problems.append(f"{path.name}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name}: not a mapping (got {type(data).__name__})")
        return None
    return data


def _identity_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Model, method, task, scale, seed and rank as far as a resolved Hydra config names them."""
    method_node = config.get("method")
    rank = None
    if isinstance(method_node, Mapping):
        rank = _as_int(method_node.get("r", method_node.get("rank")))
    train = config.get("train") if isinstance(config.get("train"), Mapping) else {}
    return {
        "model": _name_of(config.get("model")),
        "method": _name_of(method_node),
        "task": _name_of(config.get("task")),
        "scale": _name_of(config.get("scale_name") or config.get("scale")),
        "seed": _as_int(config.get("seed", train.get("seed"))),
        "rank": rank,
    }


def _identity_from_path(path: Path) -> dict[str, Any]:
    """Identity from ``…/<model>/<method label>/<task>/seed<seed>[tag]`` (the default layout), if it matches.

    The method label carries the rank for adapters (``lora-r8``): it gives method ``lora`` and rank 8.
    """
    match = _SEED_DIR.match(path.name)
    parts = path.parts
    if not match or len(parts) < 4:
        return {}
    ident: dict[str, Any] = {"seed": int(match.group(1)), "task": parts[-2], "method": parts[-3], "model": parts[-4]}
    label = _LABEL_RANK.fullmatch(parts[-3])
    if label:
        ident["method"], ident["rank"] = label.group(1), int(label.group(2))
    return ident


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run folder into a :class:`RunRecord`; problems are recorded, never raised."""
    path = Path(path)
    problems: list[str] = []
    summary_path = path / "summary.json"
    has_summary = summary_path.is_file()
    summary = _read(summary_path, problems, expected=False)
    if not has_summary:
        status = INCOMPLETE
    elif summary is None:
        status = MALFORMED
    elif summary.get("status") in (FINISHED, FAILED):
        status = summary["status"]
    else:
        status = MALFORMED
        problems.append(f"summary.json: status {summary.get('status')!r} is neither 'finished' nor 'failed'")
    finished = status == FINISHED
    config = _read(path / "config.yaml", problems, expected=has_summary)
    eval_results = _read(path / "eval_results.json", problems, expected=finished)
    data_indices = _read(path / "data_indices.json", problems, expected=has_summary)
    environment = _read(path / "environment.json", problems, expected=has_summary)

    from_summary = summary or {}
    from_config = _identity_from_config(config) if config else {}
    from_path = _identity_from_path(path)
    ident: dict[str, Any] = {}
    used_path = []
    for key in ("model", "method", "task", "scale", "seed", "rank"):
        value = from_summary.get(key)
        if key in ("seed", "rank"):
            value = _as_int(value)
        elif value is not None and not isinstance(value, str):
            value = _name_of(value)
        if value is None:
            value = from_config.get(key)
        if value is None and from_path.get(key) is not None:
            value = from_path[key]
            used_path.append(key)
        ident[key] = value
    if used_path:
        problems.append(f"{', '.join(used_path)} taken from the folder path")
    method = canonical_method(ident["method"])
    rank = ident["rank"] if has_rank(method) else None
    commit = from_summary.get("commit") if isinstance(from_summary.get("commit"), str) else None
    error = from_summary.get("error")
    return RunRecord(
        path=path, status=status, model=ident["model"], method=method, task=canonical_task(ident["task"]),
        scale=ident["scale"], seed=ident["seed"], rank=rank, commit=commit,
        runtime_s=_as_float(from_summary.get("runtime_s")), error=None if error is None else str(error),
        summary=summary, config=config, eval_results=eval_results, data_indices=data_indices,
        environment=environment, problems=problems,
    )


def collect_runs(root: str | os.PathLike[str]) -> list[RunRecord]:
    """Every run folder under ``root`` (``root`` itself included), sorted by path.

    A folder counts as a run folder when it holds one of :data:`RUN_FILES`; the walk does not descend into run
    folders (checkpoints, adapters) nor into hidden folders (``.hydra``). Raises ``FileNotFoundError`` only if
    ``root`` is not a directory; bad run folders are returned with their problems.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No run folder root at {root}")
    runs = []
    for dirpath, dirnames, filenames in os.walk(root):
        if any(name in filenames for name in RUN_FILES):
            runs.append(read_run(dirpath))
            dirnames[:] = []
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(runs, key=lambda run: str(run.path))


def problem_report(runs: list[RunRecord], root: str | os.PathLike[str] | None = None) -> list[str]:
    """One line per run with a problem or a non-finished status: ``<path>: <status>; <problems>``."""
    lines = []
    for run in runs:
        if run.status == FINISHED and not run.problems:
            continue
        shown = run.path
        if root is not None:
            try:
                shown = run.path.relative_to(root)
            except ValueError:
                pass
        details = [run.status] + run.problems
        if run.status == FAILED and run.error:
            details.append(f"error: {run.error.splitlines()[0][:160] if run.error.strip() else run.error}")
        lines.append(f"{shown}: {'; '.join(details)}")
    return lines
