"""Generic result tables: our runs (mean ± sample std over seeds) beside the paper's published rows.

Flow: :func:`experiments.runs.collect_runs` → :func:`build_table` (with a :class:`TableSpec`) →
:func:`write_table`, which writes ``<out>/<name>.md`` (caption + table + notes) and ``<out>/<name>.csv`` (the same
rows, full precision), each atomically (temporary file in the same folder, then ``os.replace``).

Conventions
- Runs are grouped by (model, method, rank, scale) into rows and by task into cells; a cell aggregates seeds:
  mean, sample standard deviation (n − 1; none for n = 1) and n, the number of seeds that gave a value. One run per
  seed counts (finished > failed > incomplete > malformed when a seed has several folders; duplicates are noted).
- Values are shown as percentages. Run files hold fractions (``spectune.evaluation`` writes 0.93, not 93.0), so a
  column multiplies the stored value by its ``factor`` (100 by default; 1 for a metric that is not a fraction).
  Paper values are percentages already.
- Failed, incomplete and malformed runs, and finished runs whose metric is missing, stay visible in their cell
  (``failed: seed 1``); a cell with no run at all reads ``not run``.
- Avg: the unweighted mean over the row's ``in_avg`` columns that have a value (recomputed for paper rows too);
  an Avg over fewer columns than the table has says ``(k/N tasks)``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.runs import (
    FAILED,
    FINISHED,
    INCOMPLETE,
    MALFORMED,
    RunRecord,
    canonical_method,
    canonical_task,
    problem_report,
)
from spectune.io import write_text_atomic

NO_METRIC = "no metric"
PROBLEM_KINDS = (FAILED, INCOMPLETE, MALFORMED, NO_METRIC)
_PRIORITY = {FINISHED: 0, FAILED: 1, INCOMPLETE: 2, MALFORMED: 3}

METHOD_DISPLAY = {"full": "FT", "lora": "LoRA", "lora_dash": "LoRA-Dash", "plora": "PeriodicLoRA", "svf": "SVF",
                  "dora": "DoRA", "pissa": "PiSSA", "base": "base model (no fine-tuning)", "-": "-"}
MODEL_DISPLAY = {"minilm": "MiniLM", "all-minilm-l6-v2": "MiniLM", "sentence-transformers/all-minilm-l6-v2": "MiniLM",
                 "smollm2": "SmolLM2", "smollm2-135m-instruct": "SmolLM2",
                 "huggingfacetb/smollm2-135m-instruct": "SmolLM2"}
TASK_DISPLAY = {"sst2": "SST-2", "rte": "RTE", "mrpc": "MRPC", "cola": "CoLA", "qqp": "QQP", "qnli": "QNLI",
                "mnli": "MNLI", "stsb": "STS-B", "boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA",
                "hellaswag": "HellaS.", "winogrande": "WinoG.", "arc_e": "ARC-e", "arc_c": "ARC-c", "obqa": "OBQA"}
METHOD_ORDER = ("base", "full", "lora", "lora_dash", "plora", "svf")

# Config settings a caption quotes, per config group (dotted path = value; values differing across runs joined by |).
TRAINING_KEYS = {
    "train": ("lr", "learning_rate", "epochs", "num_train_epochs", "max_steps", "batch_size",
              "per_device_train_batch_size", "grad_accum", "max_length", "warmup_ratio", "warmup_steps", "precision"),
    # LoRA-Dash: s directions after t pre-launch steps (what t counts), chosen by `select`; PLoRA and SVF keys later.
    "method": ("r", "alpha", "lora_alpha", "dropout", "s", "t", "count", "select"),
}


def to_percent(value: float) -> float:
    """A fraction as a percentage (0.93 → 93.0): the run files store fractions."""
    return value * 100.0


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation with n − 1, n); std is ``None`` for n < 2, both ``None`` for n = 0."""
    n = len(values)
    if n == 0:
        return None, None, 0
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, n
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)), n


def display_model(model: str | None) -> str:
    """Short display name of a model (``minilm`` → ``MiniLM``); unknown names unchanged."""
    if model is None:
        return "?"
    return MODEL_DISPLAY.get(model.lower(), model)


def display_method(method: str | None) -> str:
    """Display name of a canonical method (``lora_dash`` → ``LoRA-Dash``)."""
    return METHOD_DISPLAY.get(method or "", method or "?")


def default_ours_label(model: str | None, scale: str | None) -> str:
    """Row label of our runs: ``ours (<scale>, <Model>)``."""
    return f"ours ({scale or 'scale ?'}, {display_model(model)})"


@dataclass(frozen=True)
class Column:
    """One value column: ``metric`` of ``task`` (canonical names), shown as ``label``; ``in_avg``: part of Avg;
    ``factor``: multiplies the stored value (100: fraction → %)."""

    key: str
    task: str
    metric: str
    label: str
    in_avg: bool = True
    factor: float = 100.0


@dataclass(frozen=True)
class PaperRow:
    """A published row: ``values`` maps column keys to percentages (``None``: not reported)."""

    label: str
    model: str
    method: str
    rank: int | None
    values: Mapping[str, float | None]
    params_pct: str | None = None
    avg_published: float | None = None
    note: str = ""


@dataclass
class TableSpec:
    """What a table shows. ``expected_rows`` (method, rank) appear for our model even without runs (``not run``)."""

    name: str
    title: str
    columns: Sequence[Column]
    command: str
    runs_root: str
    methods: Sequence[str] | None = None
    models: Sequence[str] | None = None
    scales: Sequence[str] | None = None
    expected_rows: Sequence[tuple[str, int | None]] = ()
    expected_model: str | None = None
    expected_scale: str | None = None
    paper_rows: Sequence[PaperRow] = ()
    paper_source: str = ""
    caveats: Sequence[str] = ()
    ours_label: Callable[[str | None, str | None], str] = default_ours_label
    avg_label: str | None = None
    # Further caption bullets (``**Key**: text``), shown before the command (evaluation protocol, runtime, ...).
    extra_caption: Sequence[str] = ()


@dataclass
class Cell:
    """One table cell: our values per seed (in %) and the seeds that did not give one, or a paper value."""

    values: list[float] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    problems: dict[str, list[int | None]] = field(default_factory=dict)
    paper: bool = False
    paper_value: float | None = None

    @property
    def stats(self) -> tuple[float | None, float | None, int]:
        """(mean, sample std, n) of our values; the paper value with n = 0 for paper cells."""
        if self.paper:
            return self.paper_value, None, 0
        return mean_std(self.values)

    @property
    def mean(self) -> float | None:
        """Mean (ours) or the published value (paper)."""
        return self.stats[0]

    @property
    def status(self) -> str:
        """``paper``, ``n/a`` (paper, not reported), ``ok``, ``partial`` (values and problems), ``not run``, or the
        problem kinds joined with ``+`` (``failed``, ``incomplete+failed`` …)."""
        if self.paper:
            return "paper" if self.paper_value is not None else "n/a"
        kinds = [k for k in PROBLEM_KINDS if self.problems.get(k)]
        if self.values:
            return "partial" if kinds else "ok"
        return "+".join(kinds) if kinds else "not run"

    def problem_text(self) -> str:
        """``failed: seed 1; incomplete: seeds 2, 3`` (empty if none)."""
        parts = []
        for kind in PROBLEM_KINDS:
            seeds = self.problems.get(kind)
            if seeds:
                shown = ", ".join("?" if s is None else str(s) for s in seeds)
                parts.append(f"{kind}: seed{'s' if len(seeds) > 1 else ''} {shown}")
        return "; ".join(parts)


@dataclass
class Row:
    """One table row (ours or paper) with its cells keyed by column key."""

    source: str
    label: str
    model: str | None
    method: str | None
    rank: int | None
    scale: str | None
    cells: dict[str, Cell]
    params_pct: str | None = None
    params_values: list[float] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    note: str = ""

    def params_text(self) -> str:
        """Markdown params %: the published text (paper), else ours (a range if runs differ), else ``—``."""
        if self.params_pct:
            return self.params_pct
        if not self.params_values:
            return "—"
        low, high = min(self.params_values), max(self.params_values)
        return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"

    def avg(self, columns: Sequence[Column]) -> tuple[float | None, int, int]:
        """(mean over the ``in_avg`` columns with a value, how many had one, how many there are)."""
        keys = [c.key for c in columns if c.in_avg]
        means = [m for m in (self.cells[k].mean for k in keys) if m is not None]
        return (math.fsum(means) / len(means) if means else None), len(means), len(keys)


@dataclass
class Provenance:
    """Where the numbers of our rows come from, for the caption."""

    runs_root: str
    command: str
    counts: dict[str, int]
    scales: list[str]
    models: list[str]
    seeds: list[int]
    carve_out: dict[str, list[str]]
    sources: list[str]
    origins: list[str]
    commits: list[str]
    devices: list[str]
    training: dict[str, list[str]]
    training_by_row: dict[str, dict[str, list[str]]]
    notes: list[str]


@dataclass
class Table:
    """A built table: its spec, rows in display order, and the provenance of our rows."""

    spec: TableSpec
    rows: list[Row]
    provenance: Provenance


# ----------------------------------------------------------------------------------------------------- provenance


def _git_of(run: RunRecord) -> str | None:
    """The run's commit (summary, else environment.json), with `` (dirty)`` when environment.json says so."""
    env = run.environment or {}
    git = env.get("git") if isinstance(env.get("git"), Mapping) else {}
    commit = run.commit or git.get("commit") or env.get("git_commit") or env.get("commit")
    if not isinstance(commit, str) or not commit:
        return None
    dirty = git.get("dirty", env.get("git_dirty", env.get("dirty")))
    return f"{commit} (dirty)" if dirty is True else commit


def describe_device(environment: Mapping[str, Any] | None) -> str | None:
    """Hardware in words from environment.json: ``1 × NVIDIA H100 (cuda)``, ``cpu (x86_64, 16 logical cores)``,
    plus torch threads and world size; a plain string ``device`` is taken as is."""
    if not environment:
        return None
    parts: list[str] = []
    device = environment.get("device")
    if isinstance(device, Mapping):
        kind, name, count = device.get("type"), device.get("name"), device.get("count")
        if kind == "cuda":
            parts.append(f"{count} × {name} (cuda)" if count else f"{name} (cuda)")
        else:
            inner = ", ".join(x for x in (str(name) if name else "", f"{count} logical cores" if count else "") if x)
            parts.append(f"{kind or 'device'} ({inner})" if inner else str(kind or "device"))
    elif device is not None:
        parts.append(str(device))
    threads = environment.get("torch_threads", environment.get("torch_num_threads"))
    if isinstance(threads, int) and not isinstance(threads, bool):
        parts.append(f"{threads} torch threads")
    world = environment.get("world_size")
    if isinstance(world, int) and not isinstance(world, bool) and world > 1:
        parts.append(f"world size {world}")
    return ", ".join(parts) if parts else None


_SPLITS = {"train": "train", "train_indices": "train", "train_idx": "train", "test": "test", "test_indices": "test",
           "test_idx": "test", "eval": "test", "eval_indices": "test", "validation": "validation",
           "validation_indices": "validation", "dev": "validation", "val": "validation"}
_SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def _is_index_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value)


def carve_out_sizes(data_indices: Mapping[str, Any] | None, default_task: str | None) -> dict[str, dict[str, int]]:
    """Split sizes per (canonical) task from data_indices.json: the lengths of the recorded index lists.

    Understands the layout ``spectune.data.tasks.write_indices`` writes (``train_indices``/``test_indices`` each
    mapping task → indices, ``n_train``/``n_test`` totals) and nested ones (``{task: {"train": [...], "test":
    [...]}}``, optionally under ``tasks``; ``{"train": [...]}`` at top level belongs to ``default_task``).
    ``n_train``/``n_test`` are used for ``default_task`` only when no index list names its split.
    """
    out: dict[str, dict[str, int]] = {}

    def add(task: str | None, split: str, size: int) -> None:
        if task is not None:
            out.setdefault(canonical_task(task) or task, {}).setdefault(split, size)

    def visit(node: Mapping[str, Any], task: str | None) -> None:
        for key, value in node.items():
            split = _SPLITS.get(str(key).lower())
            if split and _is_index_list(value):
                add(task, split, len(value))
            elif split and isinstance(value, Mapping):  # {"train_indices": {task: [...]}}
                for sub_task, indices in value.items():
                    if _is_index_list(indices):
                        add(str(sub_task), split, len(indices))
            elif isinstance(value, Mapping) and key not in ("origin", "requested", "sizes"):
                visit(value, task if key in ("tasks", "indices") else str(key))

    if isinstance(data_indices, Mapping):
        visit(data_indices, default_task)
        for split in ("train", "test"):
            total = data_indices.get(f"n_{split}")
            if isinstance(total, int) and not isinstance(total, bool) and default_task is not None:
                add(default_task, split, total)
    return out


def data_sources(data_indices: Any) -> tuple[list[str], list[str]]:
    """What the data came from: the ``source`` kinds (``embedded (carve-out)`` when ``carve_out`` is true; nested
    per-task ``source`` strings too) and the ``origin`` strings (the split or file the indices refer to)."""
    kinds: list[str] = []
    origins: list[str] = []
    if not isinstance(data_indices, Mapping):
        return kinds, origins
    source = data_indices.get("source")
    if isinstance(source, str):
        kinds.append(f"{source} (carve-out)" if data_indices.get("carve_out") is True else source)

    def leaves(node: Any) -> None:
        if isinstance(node, str):
            origins.append(node)
        elif isinstance(node, Mapping):
            for value in node.values():
                leaves(value)

    leaves(data_indices.get("origin"))
    tasks = data_indices.get("tasks")
    if isinstance(tasks, Mapping):  # nested per-task records: {"tasks": {task: {"source": ...}}}
        kinds.extend(v["source"] for v in tasks.values() if isinstance(v, Mapping) and isinstance(v.get("source"), str))
    return kinds, origins


def training_settings(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Dotted path → value of the settings a caption quotes: :data:`TRAINING_KEYS` of the ``train`` and ``method``
    groups of config.yaml (``max_steps`` only when > 0: it overrides epochs)."""
    found: dict[str, str] = {}
    if not isinstance(config, Mapping):
        return found
    for group, keys in TRAINING_KEYS.items():
        node = config.get(group)
        if not isinstance(node, Mapping):
            continue
        for key in keys:
            value = node.get(key)
            if value is None or isinstance(value, (bool, Mapping, list)):
                continue
            if key == "max_steps" and isinstance(value, (int, float)) and value <= 0:
                continue
            found[f"{group}.{key}"] = str(value)
    return found


def params_pct(run: RunRecord) -> float | None:
    """Trainable parameters in % of the model, from summary.json's ``trainable_params``/``total_params``."""
    summary = run.summary or {}
    trainable, total = summary.get("trainable_params"), summary.get("total_params")
    if isinstance(trainable, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return 100.0 * trainable / total
    return None


def _row_name(method: str | None, rank: int | None) -> str:
    """``FT``, ``LoRA r=8``: how the caption names a row's settings."""
    return display_method(method) + ("" if rank is None else f" r={rank}")


def _provenance(spec: TableSpec, runs: Sequence[RunRecord], notes: list[str]) -> Provenance:
    """Collect the caption facts (counts, scales, seeds, carve-outs, sources, commits, devices, settings) of ``runs``.

    Training settings equal for every row are listed once (``training``); the others per row (``training_by_row``).
    """
    counts = {status: sum(1 for r in runs if r.status == status) for status in (FINISHED, FAILED, INCOMPLETE,
                                                                                 MALFORMED)}
    carve: dict[str, set[str]] = {}
    per_row: dict[str, dict[str, set[str]]] = {}
    tasks = {c.task for c in spec.columns}
    kinds: set[str] = set()
    origins: set[str] = set()
    for run in runs:
        for task, sizes in carve_out_sizes(run.data_indices, run.task).items():
            if task in tasks:
                ordered = sorted(sizes.items(), key=lambda kv: (_SPLIT_ORDER.get(kv[0], 9), kv[0]))
                carve.setdefault(task, set()).add(", ".join(f"{k} {v}" for k, v in ordered))
        found_kinds, found_origins = data_sources(run.data_indices)
        kinds.update(found_kinds)
        origins.update(found_origins)
        settings = per_row.setdefault(_row_name(run.method, run.rank), {})
        for path, value in training_settings(run.config).items():
            settings.setdefault(path, set()).add(value)
        steps = (run.summary or {}).get("train_steps")
        if isinstance(steps, int) and not isinstance(steps, bool):
            settings.setdefault("optimizer steps", set()).add(str(steps))
    common: dict[str, set[str]] = {}
    for key in sorted({k for settings in per_row.values() for k in settings}):
        values = [settings.get(key) for settings in per_row.values()]
        if key == "optimizer steps":  # only finished runs record it: rows whose runs all failed do not contradict
            values = [v for v in values if v is not None]
        if all(v == values[0] for v in values):
            common[key] = values[0]
    by_row = {name: {k: sorted(v, key=_num_key) for k, v in sorted(settings.items()) if k not in common}
              for name, settings in sorted(per_row.items())}
    task_order = list(dict.fromkeys(c.task for c in spec.columns))
    return Provenance(
        runs_root=spec.runs_root,
        command=spec.command,
        counts=counts,
        scales=sorted({r.scale for r in runs if r.scale}),
        models=sorted({r.model for r in runs if r.model}),
        seeds=sorted({r.seed for r in runs if r.seed is not None}),
        carve_out={t: sorted(carve[t]) for t in task_order if t in carve},
        sources=sorted(kinds),
        origins=sorted(origins),
        commits=sorted({c for c in (_git_of(r) for r in runs) if c}),
        devices=sorted({d for d in (describe_device(r.environment) for r in runs) if d}),
        training={k: sorted(v, key=_num_key) for k, v in sorted(common.items())},
        training_by_row={name: settings for name, settings in by_row.items() if settings},
        notes=notes,
    )


def _num_key(text: str) -> tuple[int, float, str]:
    """Sort key: numbers numerically, then other strings."""
    try:
        return 0, float(text), text
    except ValueError:
        return 1, 0.0, text


# ----------------------------------------------------------------------------------------------------------- build


def _relative(run: RunRecord, root: str) -> str:
    """The run's path relative to the runs root (absolute if outside it)."""
    try:
        return str(run.path.relative_to(root))
    except ValueError:
        return str(run.path)


def build_table(runs: Iterable[RunRecord], spec: TableSpec) -> Table:
    """Group ``runs`` into rows and cells per ``spec``; add the paper rows; order rows method by method.

    Runs outside the spec (other tasks, methods, models, scales) are ignored; runs that cannot be placed
    (unknown model/method/task) and runs whose seed has several folders are listed in the provenance notes.
    """
    tasks = {c.task for c in spec.columns}
    methods = {canonical_method(m) for m in spec.methods} if spec.methods else None
    notes: list[str] = []
    selected: list[RunRecord] = []
    for run in runs:
        if not run.placeable:
            notes.append(f"{_relative(run, spec.runs_root)}: {run.status}; cannot be placed (model, method or task "
                         f"unknown){'; ' + '; '.join(run.problems) if run.problems else ''}")
            continue
        if run.task not in tasks or (methods is not None and run.method not in methods):
            continue
        if spec.models is not None and run.model not in spec.models:
            continue
        if spec.scales is not None and run.scale not in spec.scales:
            continue
        selected.append(run)
        notes.extend(problem_report([run], spec.runs_root))

    RowKey = tuple[str | None, str | None, int | None, str | None]
    groups: dict[RowKey, dict[str, dict[Any, list[RunRecord]]]] = {}
    for run in selected:
        key = (run.model, run.method, run.rank, run.scale)
        seed_key: Any = run.seed if run.seed is not None else ("path", str(run.path))
        groups.setdefault(key, {}).setdefault(run.task, {}).setdefault(seed_key, []).append(run)
    if spec.expected_model is not None:
        for method, rank in spec.expected_rows:
            method = canonical_method(method)
            rank = None if method == "full" else rank
            if not any(k[1] == method and k[2] == rank for k in groups):
                groups[(spec.expected_model, method, rank, spec.expected_scale)] = {}

    rows: list[Row] = []
    for (model, method, rank, scale), by_task in groups.items():
        cells = {c.key: Cell() for c in spec.columns}
        commits: set[str] = set()
        pcts: set[float] = set()
        for task, by_seed in by_task.items():
            for _seed_key, candidates in sorted(by_seed.items(), key=lambda kv: str(kv[0])):
                candidates = sorted(candidates, key=lambda r: (_PRIORITY[r.status], str(r.path)))
                chosen = candidates[0]
                if len(candidates) > 1:
                    notes.append(f"seed {chosen.seed} of {display_method(method)} r={rank} {task} has "
                                 f"{len(candidates)} run folders; used {_relative(chosen, spec.runs_root)} "
                                 f"({chosen.status})")
                if (commit := _git_of(chosen)) is not None:
                    commits.add(commit)
                if chosen.status == FINISHED and (pct := params_pct(chosen)) is not None:
                    pcts.add(pct)
                for column in spec.columns:
                    if column.task != task:
                        continue
                    cell = cells[column.key]
                    if chosen.status != FINISHED:
                        cell.problems.setdefault(chosen.status, []).append(chosen.seed)
                        continue
                    value = chosen.metric(column.metric, task)
                    if value is None:
                        cell.problems.setdefault(NO_METRIC, []).append(chosen.seed)
                    else:
                        cell.values.append(value * column.factor)
                        cell.seeds.append(chosen.seed)
        rows.append(Row(source="ours", label=spec.ours_label(model, scale), model=model, method=method, rank=rank,
                        scale=scale, cells=cells, params_values=sorted(pcts), commits=sorted(commits)))
    for paper in spec.paper_rows:
        cells = {c.key: Cell(paper=True, paper_value=paper.values.get(c.key)) for c in spec.columns}
        rows.append(Row(source="paper", label=paper.label, model=paper.model, method=canonical_method(paper.method),
                        rank=paper.rank, scale=None, cells=cells, params_pct=paper.params_pct, note=paper.note))

    def order(row: Row) -> tuple[Any, ...]:
        m = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
        return (m, row.method or "", -1 if row.rank is None else row.rank, row.source != "ours", row.model or "",
                row.scale or "", row.label)

    rows.sort(key=order)
    return Table(spec=spec, rows=rows, provenance=_provenance(spec, selected, notes))


def load_paper_rows(csv_path: str | os.PathLike[str], *, model_column: str, model: str, label: str,
                    column_map: Mapping[str, str], select: Sequence[tuple[str, int | None]] | None = None
                    ) -> list[PaperRow]:
    """Paper rows from a ``results/paper`` CSV: rows with ``model_column == model`` (and (method, rank) in
    ``select``, in that order if given); ``column_map`` maps our column keys to CSV columns."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    found: dict[tuple[str, int | None], PaperRow] = {}
    for rec in records:
        if rec[model_column] != model:
            continue
        method = canonical_method(rec["method"]) or rec["method"]
        rank = int(rec["rank"]) if rec.get("rank") else None
        values = {key: (float(rec[col]) if rec.get(col) not in (None, "") else None) for key, col in column_map.items()}
        avg = float(rec["avg"]) if rec.get("avg") else None
        found[(method, rank)] = PaperRow(label=label, model=model, method=method, rank=rank, values=values,
                                         params_pct=rec.get("params_pct") or None, avg_published=avg,
                                         note=rec.get("note", ""))
    if select is None:
        return list(found.values())
    missing = [s for s in select if (canonical_method(s[0]), s[1]) not in found]
    if missing:
        raise KeyError(f"{csv_path} has no rows {missing} for {model_column}={model}")
    return [found[(canonical_method(m), r)] for m, r in select]


# ---------------------------------------------------------------------------------------------------------- render


def _fmt(value: float | None) -> str:
    """2-decimal text, ``—`` for ``None``."""
    return "—" if value is None else f"{value:.2f}"


def format_cell(cell: Cell) -> str:
    """Markdown text of a cell: ``91.23 ± 0.45 (n=3)``, ``91.23 (n=1; failed: seed 2)``, ``**failed** (seed 1)``,
    ``not run``; paper cells: ``93.69`` or ``—``."""
    if cell.paper:
        return _fmt(cell.paper_value)
    mean, std, n = cell.stats
    problems = cell.problem_text()
    if n:
        text = f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"
        return f"{text} (n={n}{'; ' + problems if problems else ''})"
    if problems:
        parts = []
        for piece in problems.split("; "):
            kind, seeds = piece.split(": ", 1)
            parts.append(f"**{kind}** ({seeds})")
        return "; ".join(parts)
    return "not run"


def _avg_text(row: Row, columns: Sequence[Column]) -> str:
    """Markdown Avg cell, flagged when over fewer tasks or over cells missing seeds."""
    avg, k, total = row.avg(columns)
    if avg is None:
        return "—"
    text = f"{avg:.2f}" if k == total else f"{avg:.2f} ({k}/{total} tasks)"
    if any(row.cells[c.key].status == "partial" for c in columns if c.in_avg):
        text += " (incl. partial cells)"
    return text


def avg_label(spec: TableSpec) -> str:
    """Header of the Avg column: ``Avg (<labels of the in_avg columns>)`` unless the spec names it."""
    return spec.avg_label or f"Avg ({', '.join(c.label for c in spec.columns if c.in_avg)})"


def caption_lines(table: Table) -> list[str]:
    """The caption as markdown bullet lines (scale, models, data, seeds, settings, commits, hardware, command)."""
    p = table.provenance
    spec = table.spec
    counts = ", ".join(f"{n} {status}" for status, n in p.counts.items())
    lines = [
        f"- **Ours**: run folders under `{p.runs_root}` ({counts}); scale: {', '.join(p.scales) or 'unknown'}; "
        f"model: {', '.join(p.models) or 'unknown'}.",
    ]
    if p.carve_out:
        data = "; ".join(f"{TASK_DISPLAY.get(t, t)}: {' | '.join(v)}" for t, v in p.carve_out.items())
        lines.append(f"- **Data carve-out** (examples per split): {data}.")
    else:
        lines.append("- **Data carve-out**: not recorded (no readable data_indices.json).")
    if p.sources or p.origins:
        origin = f" from {', '.join(p.origins)}" if p.origins else ""
        lines.append(f"- **Data source**: {', '.join(p.sources) or 'not recorded'}{origin}.")
    lines.append(f"- **Seeds**: {', '.join(map(str, p.seeds)) or 'none'}.")
    if p.training or p.training_by_row:
        parts = []
        if p.training:
            parts.append(", ".join(f"{k}={' | '.join(v)}" for k, v in p.training.items()))
        for name, settings in p.training_by_row.items():
            parts.append(f"{name}: " + ", ".join(f"{k}={' | '.join(v)}" for k, v in settings.items()))
        lines.append(f"- **Training settings** (config.yaml; optimizer steps from summary.json): {'; '.join(parts)}.")
    lines.append(f"- **Commit(s)**: {', '.join(p.commits) or 'not recorded'}.")
    lines.append(f"- **Hardware**: {'; '.join(p.devices) or 'not recorded'}.")
    if spec.paper_source:
        lines.append(f"- **Paper**: {spec.paper_source}")
    lines.extend(f"- {line}" for line in spec.extra_caption)
    lines.append(f"- **Command**: `{p.command}`")
    return lines


def render_markdown(table: Table) -> str:
    """The table file: title, caption (caveats + provenance), the table, how to read a cell, problem notes."""
    spec = table.spec
    out = [f"# {spec.title}", ""]
    if spec.caveats:
        out += [" ".join(spec.caveats), ""]
    out += caption_lines(table) + [""]
    header = ["source", "method", "rank", "params %"] + [c.label for c in spec.columns] + [avg_label(spec)]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join("---" for _ in header) + "|")
    for row in table.rows:
        cells = [row.label, display_method(row.method), "" if row.rank is None else str(row.rank),
                 row.params_text()]
        cells += [format_cell(row.cells[c.key]) for c in spec.columns]
        cells.append(_avg_text(row, spec.columns))
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Cells of our rows: mean ± sample standard deviation over seeds in %, n = seeds that gave a value; "
            "failed / incomplete / malformed / no metric name the seeds without a value; not run: no run folder. "
            "params %: trainable in % of all parameters (ours: summary.json's trainable_params / total_params; "
            "paper: as published). Paper rows: the published number; —: not reported. "
            "Avg: unweighted mean of the row's "
            f"{', '.join(c.label for c in spec.columns if c.in_avg)}; (k/N tasks) marks an Avg over fewer tasks, not "
            "comparable with the others; (incl. partial cells): some of its cells lack seeds."]
    paper_notes = [r for r in table.rows if r.source == "paper" and r.note]
    if paper_notes:
        out += ["", "## Notes on paper rows", ""]
        out += [f"- {r.label} {display_method(r.method)}{'' if r.rank is None else f' r={r.rank}'}: {r.note}"
                for r in paper_notes]
    if table.provenance.notes:
        out += ["", "## Run folders with problems", ""] + [f"- {n}" for n in table.provenance.notes]
    return "\n".join(out) + "\n"


def _num(value: float | None) -> str:
    """Full-precision text (``repr``), empty for ``None``."""
    return "" if value is None else repr(float(value))


def render_csv(table: Table) -> str:
    """The rows as CSV, full precision: per column ``<key>_mean, _std, _n, _seeds, _status, _problems``; then
    ``avg, avg_n_tasks, commits, note``. Paper rows: ``_mean`` is the published value, ``_status`` ``paper``."""
    spec = table.spec
    header = ["source", "label", "model", "method", "rank", "scale", "params_pct"]
    for c in spec.columns:
        header += [f"{c.key}_{s}" for s in ("mean", "std", "n", "seeds", "status", "problems")]
    header += ["avg", "avg_n_tasks", "commits", "note"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        params = row.params_pct or ";".join(repr(v) for v in row.params_values)
        record = [row.source, row.label, row.model or "", row.method or "", "" if row.rank is None else row.rank,
                  row.scale or "", params]
        for c in spec.columns:
            cell = row.cells[c.key]
            mean, std, n = cell.stats
            record += [_num(mean), _num(std), "" if cell.paper else n,
                       ";".join("" if s is None else str(s) for s in cell.seeds), cell.status, cell.problem_text()]
        avg, k, _ = row.avg(spec.columns)
        record += [_num(avg), k, ";".join(row.commits), row.note]
        writer.writerow(record)
    return buf.getvalue()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace`` (no partial files)."""
    return write_text_atomic(path, text)


def publish(table: Table, out_dir: str | os.PathLike[str]) -> int:
    """Write the table (:func:`write_table`), print its provenance notes to stderr and the paths; returns 0."""
    import sys

    paths = write_table(table, out_dir)
    for note in table.provenance.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {paths['md']} and {paths['csv']}")
    return 0


def write_table(table: Table, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.md`` and ``<out_dir>/<name>.csv`` atomically; return their paths by suffix."""
    out_dir = Path(out_dir)
    name = table.spec.name
    return {
        "md": atomic_write_text(out_dir / f"{name}.md", render_markdown(table)),
        "csv": atomic_write_text(out_dir / f"{name}.csv", render_csv(table)),
    }
