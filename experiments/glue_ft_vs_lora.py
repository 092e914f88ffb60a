"""Table: full fine-tuning vs LoRA on GLUE SST-2 / RTE / MRPC, ours (smoke, MiniLM) beside the paper (DeBERTaV3-base).

Usage (from the repository root)::

    python -m experiments.glue_ft_vs_lora --runs runs/glue_ft_vs_lora --out results/tables \\
        --command "make reproduce-glue-ft-vs-lora"

Reads the run folders under ``--runs`` (finished, failed and incomplete alike) and writes
``<out>/glue_ft_vs_lora.md`` and ``.csv``. Columns: SST-2 and RTE accuracy; MRPC accuracy (the paper's MRPC
column is accuracy, so it is the comparable number) and MRPC F1 beside it (ours only, not in Avg). Paper rows:
DeBERTaV3-base FT, LoRA r=8 and LoRA r=2 from ``results/paper/lora_dash_table2_glue.csv``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.runs import collect_runs
from experiments.tables import Column, PaperRow, Table, TableSpec, build_table, load_paper_rows, publish

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_CSV = REPO_ROOT / "results" / "paper" / "lora_dash_table2_glue.csv"
NAME = "glue_ft_vs_lora"
PAPER_BACKBONE = "DeBERTaV3-base"
PAPER_ROWS = (("full", None), ("lora", 8), ("lora", 2))

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


def paper_rows(paper_csv: str | Path = PAPER_CSV, select: Sequence[tuple[str, int | None]] = PAPER_ROWS,
               backbone: str = PAPER_BACKBONE) -> list[PaperRow]:
    """The paper's rows for ``backbone`` (default: DeBERTaV3-base FT, LoRA r=8, LoRA r=2) on SST-2, RTE, MRPC."""
    return load_paper_rows(paper_csv, model_column="backbone", model=backbone,
                           label=f"paper ({backbone})", column_map={"sst2": "sst2", "rte": "rte", "mrpc": "mrpc"},
                           select=select)


def build_spec(runs_root: str, command: str, paper_csv: str | Path = PAPER_CSV) -> TableSpec:
    """The table's spec: columns, methods (full, lora), expected rows and paper rows, caption caveats."""
    rows = paper_rows(paper_csv)
    published = ", ".join(
        f"{'FT' if r.method == 'full' else f'LoRA r={r.rank}'} {r.avg_published:.2f}" for r in rows
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
        methods=("full", "lora"),
        expected_rows=(("full", None), ("lora", 8)),
        expected_model="minilm",
        expected_scale="smoke",
        paper_rows=rows,
        paper_source="LoRA-Dash (Si et al., ICLR 2025, arXiv 2409.01035), GLUE table, authors' project page and "
                     "poster; `results/paper/lora_dash_table2_glue.csv`.",
        caveats=caveats,
    )


def make_table(runs_root: str | Path, command: str, paper_csv: str | Path = PAPER_CSV) -> Table:
    """Collect the runs under ``runs_root`` and build the table (nothing written)."""
    spec = build_spec(str(runs_root), command, paper_csv)
    return build_table(collect_runs(runs_root), spec)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 when the runs folder does not exist)."""
    return run_cli(argv, NAME, __doc__, build_spec)


def run_cli(argv: Sequence[str] | None, name: str, doc: str | None, spec_fn) -> int:
    """Shared CLI of the GLUE table drivers: ``spec_fn(runs_root, command, paper_csv) -> TableSpec``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=(doc or "").split("\n")[0])
    parser.add_argument("--runs", default=f"runs/{name}", help="root of the run folders")
    parser.add_argument("--out", default="results/tables", help="folder for <name>.md and <name>.csv")
    parser.add_argument("--command", default=None,
                        help="the exact command that produced the table, for the caption "
                             "(default: this command line)")
    parser.add_argument("--paper", default=str(PAPER_CSV), help="the paper's GLUE CSV")
    args = parser.parse_args(args_list)
    command = args.command or shlex.join(["python", "-m", f"experiments.{name}", *args_list])
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweep first)", file=sys.stderr)
        return 2
    table = build_table(collect_runs(args.runs), spec_fn(str(args.runs), command, args.paper))
    return publish(table, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
