"""Table: full fine-tuning vs LoRA on GLUE SST-2 / RTE / MRPC, ours (smoke, MiniLM) beside the paper (DeBERTaV3-base).

Usage (from the repository root; ``make table-glue-smoke`` runs the grids of conf/sweep/glue_ft_vs_lora, then this)::

    python -m experiments.glue_ft_vs_lora --runs runs/glue_ft_vs_lora --out results/tables \\
        --command "make table-glue-smoke SEEDS=3"

Reads the run folders under ``--runs`` (finished, failed and incomplete alike) and writes
``<out>/glue_ft_vs_lora.md`` and ``.csv``. Columns: SST-2 and RTE accuracy; MRPC accuracy (the paper's MRPC
column is accuracy, so it is the comparable number) and MRPC F1 beside it (ours only, not in Avg). Paper rows:
DeBERTaV3-base rows of our methods (FT, LoRA r=8 and r=2) from ``results/paper/lora_dash_table2_glue.csv``. Our
expected rows (shown as ``not run`` until their runs exist) are the cells of the experiment's sweep grids
(``--experiment``). Runs of several commits or of a dirty tree are refused unless ``--allow-mixed-commits`` (exit
status 3).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from experiments import grids
from experiments.report.cli import add_provenance_args, command_of, refuse, wall_s
from experiments.report.provenance import MixedCommitsError
from experiments.report.render import publish
from experiments.report.table import Column, PaperRow, Table, TableSpec, build_table, load_paper_rows
from experiments.report.vocabulary import display_method, method_order
from experiments.runs import collect_runs

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_CSV = REPO_ROOT / "results" / "paper" / "lora_dash_table2_glue.csv"
NAME = "glue_ft_vs_lora"
PAPER_BACKBONE = "DeBERTaV3-base"

COLUMNS = (
    Column("sst2", "sst2", "accuracy", "SST-2 acc"),
    Column("rte", "rte", "accuracy", "RTE acc"),
    Column("mrpc", "mrpc", "accuracy", "MRPC acc"),
    Column("mrpc_f1", "mrpc", "f1", "MRPC F1", in_avg=False),
)

CAVEATS = (
    "Full fine-tuning vs LoRA on GLUE SST-2, RTE and MRPC.",
    "**Smoke numbers are not a reproduction of the paper**: a different backbone (all-MiniLM-L6-v2, 6 layers, "
    "22.7M parameters, instead of DeBERTaV3-base); trained and tested on a seeded carve-out (disjoint train and "
    "test indices) of the GLUE validation sets (SST-2 872, RTE 277, MRPC 408 examples in all), since no GLUE "
    "train split is available offline; and few optimisation steps.",
    "Paper rows: DeBERTaV3-base on the full GLUE dev sets (seeds and runs per cell not stated).",
    "MRPC: the paper reports accuracy, so MRPC acc is the comparable number; MRPC F1 is ours only and not in Avg.",
)


def paper_rows(paper_csv: str | Path = PAPER_CSV, select: Sequence[tuple[str, int | None]] | None = None,
               backbone: str = PAPER_BACKBONE, methods: Sequence[str] | None = None) -> list[PaperRow]:
    """The paper's rows for ``backbone`` on SST-2, RTE, MRPC: the (method, rank) pairs ``select`` in that order, or
    every published rank of ``methods`` (method order of the registry, larger ranks first)."""
    rows = load_paper_rows(paper_csv, model_column="backbone", model=backbone, label=f"paper ({backbone})",
                           column_map={"sst2": "sst2", "rte": "rte", "mrpc": "mrpc"}, select=select)
    if select is None and methods is not None:
        order = method_order()
        rows = sorted((r for r in rows if r.method in methods),
                      key=lambda r: (order.index(r.method) if r.method in order else len(order), -(r.rank or 0)))
    return rows


def grid_rows(experiment: str) -> tuple[list[tuple[str, str, int | None]], list[str], str]:
    """(expected rows (model, method, rank), methods, scale) of an experiment's sweep grids."""
    rows = grids.table_rows(experiment)
    return rows, list(dict.fromkeys(method for _, method, _ in rows)), grids.scale_of(experiment)


def build_spec(runs_root: str, command: str, paper_csv: str | Path = PAPER_CSV, experiment: str = NAME,
               wall_s: float | None = None, allow_mixed_commits: bool = False) -> TableSpec:
    """The table's spec: columns, methods and expected rows (the experiment's grids), paper rows, caption caveats."""
    expected, methods, scale = grid_rows(experiment)
    rows = paper_rows(paper_csv, methods=methods)
    published = ", ".join(
        f"{display_method(r.method) + ('' if r.rank is None else f' r={r.rank}')} {r.avg_published:.2f}" for r in rows
        if r.avg_published is not None
    )
    caveats = CAVEATS + (
        f"Avg is recomputed over SST-2, RTE and MRPC acc for every row; the paper's published 8-task GLUE averages "
        f"are {published}.",
    )
    return TableSpec(
        name=NAME,
        title="GLUE: full fine-tuning vs LoRA (ours at smoke scale vs LoRA-Dash paper, DeBERTaV3-base)",
        columns=COLUMNS,
        command=command,
        runs_root=runs_root,
        methods=methods,
        expected_rows=expected,
        expected_scale=scale,
        paper_rows=rows,
        paper_source="LoRA-Dash (Si et al., ICLR 2025, arXiv 2409.01035), GLUE table, authors' project page and "
                     "poster; `results/paper/lora_dash_table2_glue.csv`.",
        caveats=caveats,
        wall_s=wall_s,
        allow_mixed_commits=allow_mixed_commits,
    )


def make_table(runs_root: str | Path, command: str, paper_csv: str | Path = PAPER_CSV, experiment: str = NAME,
               allow_mixed_commits: bool = False) -> Table:
    """Collect the runs under ``runs_root`` and build the table (nothing written)."""
    spec = build_spec(str(runs_root), command, paper_csv, experiment, allow_mixed_commits=allow_mixed_commits)
    return build_table(collect_runs(runs_root), spec)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 when the runs folder does not exist, 3 on mixed commits)."""
    return run_cli(argv, NAME, __doc__, build_spec, default_experiment=NAME)


def run_cli(argv: Sequence[str] | None, name: str, doc: str | None, spec_fn: Callable[..., TableSpec],
            default_experiment: str) -> int:
    """Shared CLI of the GLUE table drivers: ``spec_fn(runs_root, command, paper_csv, experiment, wall_s,
    allow_mixed_commits) -> TableSpec``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=(doc or "").split("\n")[0])
    parser.add_argument("--runs", default=f"runs/{name}", help="root of the run folders")
    parser.add_argument("--out", default="results/tables", help="folder for <name>.md and <name>.csv")
    parser.add_argument("--experiment", default=default_experiment,
                        help="the experiment whose sweep grids (conf/sweep/<experiment>) give the expected rows")
    parser.add_argument("--paper", default=str(PAPER_CSV), help="the paper's GLUE CSV")
    add_provenance_args(parser)
    args = parser.parse_args(args_list)
    command = command_of(args, f"experiments.{name}", args_list)
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweep first)", file=sys.stderr)
        return 2
    spec = spec_fn(str(args.runs), command, args.paper, args.experiment, wall_s(args), args.allow_mixed_commits)
    try:
        table = build_table(collect_runs(args.runs), spec)
    except MixedCommitsError as err:
        return refuse(err)
    return publish(table, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
