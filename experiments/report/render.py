"""The one renderer: Markdown and CSV (through the ``csv`` module) of tables, captions from a provenance, atomic files.

- :func:`render_markdown` / :func:`render_csv` / :func:`write_table` / :func:`publish`: a generic
  :class:`~experiments.report.table.Table` (title, caveats, caption, rows, notes; CSV at full precision).
- :func:`markdown_table` / :func:`csv_text`: any header + rows (drivers with a table of their own, e.g. the
  PeriodicLoRA study).
- :func:`commit_text`, :func:`runtime_text`, :func:`provenance_lines`: the caption facts of a
  :class:`~experiments.report.provenance.Provenance`, shared by tables and figure captions.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from experiments.report.provenance import ALLOW_FLAG, Provenance, commit_groups
from experiments.report.table import Cell, Column, Row, Table, TableSpec
from experiments.report.vocabulary import display_method, display_task
from spectune.io import write_text_atomic


# ------------------------------------------------------------------------------------------------------ primitives
def fmt(value: float | None, digits: int = 2) -> str:
    """``digits``-decimal text, ``—`` for ``None``."""
    return "—" if value is None else f"{value:.{digits}f}"


def num(value: float | None) -> str:
    """Full-precision text (``repr``), empty for ``None``."""
    return "" if value is None else repr(float(value))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines (``|`` inside cells escaped)."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text (``csv`` module quoting, ``\\n`` line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace`` (no partial files)."""
    return write_text_atomic(path, text)


# ------------------------------------------------------------------------------------------------------ provenance
def commit_text(prov: Provenance, short: bool = False) -> str:
    """The runs' commit: ``<sha> (all N run folders, clean work tree)``; when mixed (allowed), every run's commit:
    ``mixed, built with --allow-mixed-commits: <sha> (dirty): a, b; <sha2>: c``."""
    if not prov.commits:
        return "not recorded"
    if not prov.mixed:
        return f"{prov.commits[0].text(short)} (all {len(prov.commits)} run folders, clean work tree)"
    groups: dict[str, list[str]] = {}
    for text, runs in commit_groups(prov.commits).items():
        if short:
            full = next(c for c in prov.commits if c.text() == text)
            text = full.text(short=True)
        groups.setdefault(text, []).extend(runs)
    listed = "; ".join(f"{text}: {', '.join(runs)}" for text, runs in groups.items())
    return f"mixed, built with {ALLOW_FLAG} (the rows need not share the code): {listed}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def runtime_text(prov: Provenance, what: str = "table") -> str | None:
    """``sum of the runs' `runtime_s` … over N run folder(s) (each a–b s); wall time of the command up to this
    table …``; None when neither is known."""
    parts = []
    if prov.runtimes:
        parts.append(f"sum of the runs' `runtime_s` {_minutes(prov.runtime_s_sum or 0.0)} over {len(prov.runtimes)} "
                     f"run folder(s) (each {min(prov.runtimes):.0f}–{max(prov.runtimes):.0f} s)")
    if prov.wall_s is not None:
        parts.append(f"wall time of the command up to this {what} {_minutes(prov.wall_s)} (model loading, "
                     "evaluation and runs skipped as already finished included)")
    return "; ".join(parts) if parts else None


def settings_text(settings: dict[str, list[str]]) -> str:
    """``train.lr=5e-05, method.r=4 | 8``."""
    return ", ".join(f"{k}={' | '.join(v)}" for k, v in settings.items())


def provenance_lines(prov: Provenance) -> list[str]:
    """Caption bullets every table shares: run folders, data, seeds, settings, commit(s), hardware."""
    counts = ", ".join(f"{n} {status}" for status, n in prov.counts.items())
    lines = [
        f"- **Ours**: run folders under `{prov.runs_root}` ({counts}); scale: {', '.join(prov.scales) or 'unknown'}; "
        f"model: {', '.join(prov.models) or 'unknown'}.",
    ]
    if prov.carve_out:
        data = "; ".join(f"{display_task(t)}: {' | '.join(v)}" for t, v in prov.carve_out.items())
        lines.append(f"- **Data carve-out** (examples per split): {data}.")
    else:
        lines.append("- **Data carve-out**: not recorded (no readable data_indices.json).")
    if prov.sources or prov.origins:
        origin = f" from {', '.join(prov.origins)}" if prov.origins else ""
        lines.append(f"- **Data source**: {', '.join(prov.sources) or 'not recorded'}{origin}.")
    lines.append(f"- **Seeds**: {', '.join(map(str, prov.seeds)) or 'none'}.")
    common, by_row = prov.training, prov.training_by_row
    if common or by_row:
        parts = [settings_text(common)] if common else []
        parts += [f"{name}: {settings_text(settings)}" for name, settings in by_row.items()]
        lines.append(f"- **Training settings** (config.yaml; optimizer steps from summary.json): {'; '.join(parts)}.")
    label = "Commits" if prov.mixed else "Commit"
    lines.append(f"- **{label}**: {commit_text(prov)}.")
    lines.append(f"- **Hardware**: {'; '.join(prov.devices) or 'not recorded'}.")
    return lines


# ----------------------------------------------------------------------------------------------------------- table
def format_cell(cell: Cell) -> str:
    """Markdown text of a cell: ``91.23 ± 0.45 (n=3)``, ``91.23 (n=1; failed: seed 2)``, ``**failed** (seed 1)``,
    ``not run``; paper cells: ``93.69`` or ``—``."""
    if cell.paper:
        return fmt(cell.paper_value)
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
    """The caption as markdown bullet lines (scale, models, data, seeds, settings, commits, hardware, paper, the
    spec's own bullets, runtime, command)."""
    spec, prov = table.spec, table.provenance
    lines = provenance_lines(prov)
    if spec.paper_source:
        lines.append(f"- **Paper**: {spec.paper_source}")
    lines.extend(f"- {line}" for line in spec.extra_caption)
    if (runtime := runtime_text(prov)) is not None:
        lines.append(f"- **Runtime**: {runtime}.")
    lines.append(f"- **Command**: `{prov.command}`")
    return lines


def render_markdown(table: Table) -> str:
    """The table file: title, caption (caveats + provenance), the table, how to read a cell, problem notes."""
    spec = table.spec
    out = [f"# {spec.title}", ""]
    if spec.caveats:
        out += [" ".join(spec.caveats), ""]
    out += caption_lines(table) + [""]
    header = ["source", "method", "rank", "params %"] + [c.label for c in spec.columns] + [avg_label(spec)]
    body = []
    for row in table.rows:
        cells = [row.label, display_method(row.method), "" if row.rank is None else str(row.rank), row.params_text()]
        cells += [format_cell(row.cells[c.key]) for c in spec.columns]
        cells.append(_avg_text(row, spec.columns))
        body.append(cells)
    out += markdown_table(header, body)
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


def render_csv(table: Table) -> str:
    """The rows as CSV, full precision: per column ``<key>_mean, _std, _n, _seeds, _status, _problems``; then
    ``avg, avg_n_tasks, commits, note``. Paper rows: ``_mean`` is the published value, ``_status`` ``paper``."""
    spec = table.spec
    header = ["source", "label", "model", "method", "rank", "scale", "params_pct"]
    for c in spec.columns:
        header += [f"{c.key}_{s}" for s in ("mean", "std", "n", "seeds", "status", "problems")]
    header += ["avg", "avg_n_tasks", "commits", "note"]
    records = []
    for row in table.rows:
        params = row.params_pct or ";".join(repr(v) for v in row.params_values)
        record: list[Any] = [row.source, row.label, row.model or "", row.method or "",
                             "" if row.rank is None else row.rank, row.scale or "", params]
        for c in spec.columns:
            cell = row.cells[c.key]
            mean, std, n = cell.stats
            record += [num(mean), num(std), "" if cell.paper else n,
                       ";".join("" if s is None else str(s) for s in cell.seeds), cell.status, cell.problem_text()]
        avg, k, _ = row.avg(spec.columns)
        record += [num(avg), k, ";".join(row.commits), row.note]
        records.append(record)
    return csv_text(header, records)


def write_table(table: Table, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.md`` and ``<out_dir>/<name>.csv`` atomically; return their paths by suffix."""
    out_dir = Path(out_dir)
    name = table.spec.name
    return {
        "md": atomic_write_text(out_dir / f"{name}.md", render_markdown(table)),
        "csv": atomic_write_text(out_dir / f"{name}.csv", render_csv(table)),
    }


def publish(table: Table, out_dir: str | os.PathLike[str]) -> int:
    """Write the table (:func:`write_table`), print its provenance notes to stderr and the paths; returns 0."""
    paths = write_table(table, out_dir)
    for note in table.provenance.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {paths['md']} and {paths['csv']}")
    return 0
