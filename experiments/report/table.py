"""Generic result tables: our runs (mean ± sample std over seeds) beside the paper's published rows.

Flow: :func:`experiments.runs.collect_runs` → :func:`build_table` (with a :class:`TableSpec`; the provenance comes
from :func:`experiments.report.provenance.collect`, which refuses runs of mixed commits unless allowed) →
:func:`experiments.report.render.write_table`, which writes ``<out>/<name>.md`` and ``<out>/<name>.csv``.

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
- Rows are ordered as :func:`experiments.report.vocabulary.method_order` (the base model, then the registry's order).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.report.provenance import Provenance, collect, relative, run_commit
from experiments.report.vocabulary import display_method, display_model, has_rank, method_order
from experiments.runs import FAILED, FINISHED, INCOMPLETE, MALFORMED, RunRecord, canonical_method, problem_report

NO_METRIC = "no metric"
PROBLEM_KINDS = (FAILED, INCOMPLETE, MALFORMED, NO_METRIC)
_PRIORITY = {FINISHED: 0, FAILED: 1, INCOMPLETE: 2, MALFORMED: 3}


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


def default_ours_label(model: str | None, scale: str | None) -> str:
    """Row label of our runs: ``ours (<scale>, <Model>)``."""
    return f"ours ({scale or 'scale ?'}, {display_model(model)})"


def params_pct(run: RunRecord) -> float | None:
    """Trainable parameters in % of the model, from summary.json's ``trainable_params``/``total_params``."""
    summary = run.summary or {}
    trainable, total = summary.get("trainable_params"), summary.get("total_params")
    if isinstance(trainable, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return 100.0 * trainable / total
    return None


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
    """What a table shows. ``expected_rows`` (model, method, rank) appear even without runs (``not run``); drivers
    take them from the experiment's sweep grids (:mod:`experiments.grids`). ``wall_s``: the command's wall time up to
    the table; ``allow_mixed_commits``: build from runs of several commits or a dirty tree (listed in the caption)."""

    name: str
    title: str
    columns: Sequence[Column]
    command: str
    runs_root: str
    methods: Sequence[str] | None = None
    models: Sequence[str] | None = None
    scales: Sequence[str] | None = None
    expected_rows: Sequence[tuple[str | None, str, int | None]] = ()
    expected_scale: str | None = None
    paper_rows: Sequence[PaperRow] = ()
    paper_source: str = ""
    caveats: Sequence[str] = ()
    ours_label: Callable[[str | None, str | None], str] = default_ours_label
    avg_label: str | None = None
    # Further caption bullets (``**Key**: text``), shown before the runtime and the command (evaluation protocol, ...).
    extra_caption: Sequence[str] = ()
    wall_s: float | None = None
    allow_mixed_commits: bool = False


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
class Table:
    """A built table: its spec, rows in display order, and the provenance of our rows."""

    spec: TableSpec
    rows: list[Row]
    provenance: Provenance


def build_table(runs: Iterable[RunRecord], spec: TableSpec) -> Table:
    """Group ``runs`` into rows and cells per ``spec``; add the paper rows; order rows method by method.

    Runs outside the spec (other tasks, methods, models, scales) are ignored; runs that cannot be placed
    (unknown model/method/task) and runs whose seed has several folders are listed in the provenance notes.
    Several views of one run folder (a composite run seen per task) count once in the provenance. Raises
    :class:`~experiments.report.provenance.MixedCommitsError` when the selected runs are not all from one clean
    commit and the spec does not allow it.
    """
    tasks = {c.task for c in spec.columns}
    methods = {canonical_method(m) for m in spec.methods} if spec.methods else None
    notes: list[str] = []
    selected: list[RunRecord] = []
    for run in runs:
        if not run.placeable:
            notes.append(f"{relative(run, spec.runs_root)}: {run.status}; cannot be placed (model, method or task "
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
    for model, method, rank in spec.expected_rows:
        method = canonical_method(method) or method
        rank = rank if has_rank(method) else None
        if not any(k[0] == model and k[1] == method and k[2] == rank for k in groups):
            groups[(model, method, rank, spec.expected_scale)] = {}

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
                                 f"{len(candidates)} run folders; used {relative(chosen, spec.runs_root)} "
                                 f"({chosen.status})")
                commit = run_commit(chosen)
                if commit.commit is not None:
                    commits.add(commit.text())
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

    order_of = method_order()

    def order(row: Row) -> tuple[Any, ...]:
        m = order_of.index(row.method) if row.method in order_of else len(order_of)
        return (m, row.method or "", -1 if row.rank is None else row.rank, row.source != "ours", row.model or "",
                row.scale or "", row.label)

    rows.sort(key=order)
    provenance = collect(selected, runs_root=spec.runs_root, command=spec.command, what=f"table {spec.name}",
                         tasks=list(dict.fromkeys(c.task for c in spec.columns)), wall_s=spec.wall_s,
                         allow_mixed_commits=spec.allow_mixed_commits, notes=list(dict.fromkeys(notes)))
    return Table(spec=spec, rows=rows, provenance=provenance)


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
