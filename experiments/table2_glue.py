"""Table 2 (as taken here): GLUE, full FT vs LoRA vs LoRA-Dash at r ∈ {2, 8}, ours beside the LoRA-Dash paper.

Usage (from the repository root; ``make reproduce-table2`` runs the sweep and then this)::

    python -m experiments.table2_glue --experiment table2_glue_smoke --runs runs/table2_glue --out results/tables \\
        --command "make reproduce-table2"

Smoke scale: MiniLM on SST-2 / RTE / MRPC carve-outs, beside the paper's DeBERTaV3-base rows. Both our LoRA and
LoRA-Dash rows come from runs under identical settings (same seeds, data, lr, steps); LoRA-Dash's t is scaled to the
run length (the caption states it). The expected rows are the cells of the experiment's sweep grids
(``--experiment``, conf/sweep/<experiment>).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.glue_ft_vs_lora import COLUMNS, PAPER_BACKBONE, PAPER_CSV, grid_rows, paper_rows, run_cli
from experiments.report.table import TableSpec

NAME = "table2_glue"
EXPERIMENT = "table2_glue_smoke"

CAVEATS = (
    "LoRA-Dash's GLUE table: full FT vs LoRA vs LoRA-Dash at r = 2 and 8 on SST-2, RTE and MRPC.",
    "**Smoke numbers are not a reproduction of the paper**: all-MiniLM-L6-v2 (22.7M parameters) instead of "
    "DeBERTaV3-base; trained and tested on seeded, disjoint carve-outs of the GLUE validation sets (no train split is "
    "available offline); a few dozen optimizer steps; LoRA-Dash's pre-launch phase t scaled down with the run "
    "(method.t in the training settings below; the paper uses t = 100 on far longer runs).",
    "Our LoRA and LoRA-Dash rows share every setting but the method. The paper's LoRA GLUE rows come from its own "
    "table; seeds and runs per cell are not stated there.",
    "MRPC: the paper reports accuracy, so MRPC acc is the comparable number; MRPC F1 is ours only and not in Avg.",
    "Avg is recomputed over SST-2, RTE and MRPC acc for every row (the paper's are 8-task averages).",
)


def build_spec(runs_root: str, command: str, paper_csv: str | Path = PAPER_CSV, experiment: str = EXPERIMENT,
               wall_s: float | None = None, allow_mixed_commits: bool = False) -> TableSpec:
    """Columns, expected rows (the experiment's grids: FT, LoRA and LoRA-Dash at r=2, 8) and the paper's
    DeBERTaV3-base rows of the same methods and ranks."""
    expected, methods, scale = grid_rows(experiment)
    select = list(dict.fromkeys((method, rank) for _, method, rank in expected))
    return TableSpec(
        name=NAME,
        title="Table 2 (GLUE): FT vs LoRA vs LoRA-Dash, ours (smoke, MiniLM) beside the paper (DeBERTaV3-base)",
        columns=COLUMNS,
        command=command,
        runs_root=runs_root,
        methods=methods,
        expected_rows=expected,
        expected_scale=scale,
        paper_rows=paper_rows(paper_csv, select=select, backbone=PAPER_BACKBONE),
        paper_source="LoRA-Dash (Si et al., ICLR 2025, arXiv 2409.01035), GLUE table, authors' project page and "
                     "poster; `results/paper/lora_dash_table2_glue.csv`.",
        caveats=CAVEATS,
        wall_s=wall_s,
        allow_mixed_commits=allow_mixed_commits,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 when the runs folder does not exist, 3 on mixed commits)."""
    return run_cli(argv, NAME, __doc__, build_spec, default_experiment=EXPERIMENT)


if __name__ == "__main__":
    raise SystemExit(main())
