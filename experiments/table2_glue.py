"""Table 2 (as taken here): GLUE, full FT vs LoRA vs LoRA-Dash at r ∈ {2, 8}, ours beside the LoRA-Dash paper.

Usage (from the repository root; ``make reproduce-table2 SCALE=smoke|gpu|paper`` runs the sweep and then this)::

    python -m experiments.table2_glue --experiment table2_glue_smoke --runs runs/table2_glue --out results/tables \\
        --command "make reproduce-table2"
    python -m experiments.table2_glue --experiment table2_glue_gpu --runs runs/table2_glue_gpu --out results/tables \\
        --command "make reproduce-table2 SCALE=gpu SEEDS=3"

The scale is the experiment's (``scale_name`` of conf/experiment/<experiment>.yaml); it picks the title, the caveats
and the file stem: ``table2_glue`` at smoke and paper scale (paper tables go to results/tables/paper),
``table2_glue_<scale>`` at any other (``table2_glue_gpu``; :func:`experiments.report.cli.output_name`).

Smoke scale: MiniLM on SST-2 / RTE / MRPC carve-outs, beside the paper's DeBERTaV3-base rows. GPU scale: the same
model and tasks on the largest carve-outs of the embedded splits, longer runs (conf/experiment/table2_glue_gpu.yaml);
not a reproduction either. Both our LoRA and LoRA-Dash rows come from runs
under identical settings (same seeds, data, lr, steps); LoRA-Dash's t is scaled to the run length (the caption states
it). The expected rows are the cells of the experiment's sweep grids (``--experiment``, conf/sweep/<experiment>):
a cell without a finished run shows as ``not run`` (or names its failed / incomplete seeds), never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.glue_ft_vs_lora import COLUMNS, PAPER_BACKBONE, PAPER_CSV, grid_rows, paper_rows, run_cli
from experiments.report.cli import output_name
from experiments.report.table import TableSpec

NAME = "table2_glue"
EXPERIMENT = "table2_glue_smoke"

INTRO = "LoRA-Dash's GLUE table: full FT vs LoRA vs LoRA-Dash at r = 2 and 8 on SST-2, RTE and MRPC."
COMMON_CAVEATS = (
    "Our LoRA and LoRA-Dash rows share every setting but the method. The paper's LoRA GLUE rows come from its own "
    "table; seeds and runs per cell are not stated there.",
    "MRPC: the paper reports accuracy, so MRPC acc is the comparable number; MRPC F1 is ours only and not in Avg.",
    "Avg is recomputed over SST-2, RTE and MRPC acc for every row (the paper's are 8-task averages).",
)
CAVEATS = (
    INTRO,
    "**Smoke numbers are not a reproduction of the paper**: all-MiniLM-L6-v2 (22.7M parameters) instead of "
    "DeBERTaV3-base; trained and tested on seeded, disjoint carve-outs of the GLUE validation sets (no train split is "
    "available offline); a few dozen optimizer steps; LoRA-Dash's pre-launch phase t scaled down with the run "
    "(method.t in the training settings below; the paper uses t = 100 on far longer runs).",
    *COMMON_CAVEATS,
)
GPU_CAVEATS = (
    INTRO.replace("GLUE table:", "GLUE table at GPU scale:"),
    "**GPU-scale numbers are not a reproduction of the paper**: all-MiniLM-L6-v2 (22.7M parameters) instead of "
    "DeBERTaV3-base; trained and tested on seeded, disjoint carve-outs of the GLUE validation sets (no train split is "
    "available offline: the largest carve-outs of the embedded splits, sizes below), so far fewer optimizer steps "
    "than the paper's runs; learning rates scaled to the narrower model (`conf/scale/gpu.yaml`); epochs, batch, "
    "cutoff, warm-up and learning rates as in the training settings below (conf/experiment/table2_glue_gpu.yaml "
    "says how each relates to the paper's); LoRA-Dash's pre-launch phase t scaled to the run (method.t below; the "
    "paper uses t = 100 on far longer runs).",
    *COMMON_CAVEATS,
)
PAPER_CAVEATS = (
    INTRO.replace("GLUE table:", "GLUE table at the paper's scale:"),
    "Ours: DeBERTaV3 on the GLUE train and dev sets (hub data) with the paper-scale settings of "
    "conf/experiment/table2_glue_paper.yaml; this table shows the SST-2, RTE and MRPC columns only.",
    *COMMON_CAVEATS,
)
TITLES = {
    "smoke": "Table 2 (GLUE): FT vs LoRA vs LoRA-Dash, ours (smoke, MiniLM) beside the paper (DeBERTaV3-base)",
    "gpu": "Table 2 (GLUE): FT vs LoRA vs LoRA-Dash, ours (GPU scale, MiniLM) beside the paper (DeBERTaV3-base)",
    "paper": "Table 2 (GLUE): FT vs LoRA vs LoRA-Dash, ours (paper scale) beside the paper (DeBERTaV3-base)",
}
SCALE_CAVEATS = {"smoke": CAVEATS, "gpu": GPU_CAVEATS, "paper": PAPER_CAVEATS}


def build_spec(runs_root: str, command: str, paper_csv: str | Path = PAPER_CSV, experiment: str = EXPERIMENT,
               wall_s: float | None = None, allow_mixed_commits: bool = False) -> TableSpec:
    """Columns, expected rows (the experiment's grids: FT, LoRA and LoRA-Dash at r=2, 8) and the paper's
    DeBERTaV3-base rows of the same methods and ranks; the title, caveats and file stem of the experiment's scale
    (``KeyError`` naming the scales for one without a title here)."""
    expected, methods, scale = grid_rows(experiment)
    if scale not in TITLES:
        raise KeyError(f"{experiment} runs at scale {scale!r}; {NAME} has titles for {sorted(TITLES)}")
    select = list(dict.fromkeys((method, rank) for _, method, rank in expected))
    return TableSpec(
        name=output_name(NAME, scale),
        title=TITLES[scale],
        columns=COLUMNS,
        command=command,
        runs_root=runs_root,
        methods=methods,
        expected_rows=expected,
        expected_scale=scale,
        paper_rows=paper_rows(paper_csv, select=select, backbone=PAPER_BACKBONE),
        paper_source="LoRA-Dash (Si et al., ICLR 2025, arXiv 2409.01035), GLUE table, authors' project page and "
                     "poster; `results/paper/lora_dash_table2_glue.csv`.",
        caveats=SCALE_CAVEATS[scale],
        wall_s=wall_s,
        allow_mixed_commits=allow_mixed_commits,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 when the runs folder does not exist, 3 on mixed commits)."""
    return run_cli(argv, NAME, __doc__, build_spec, default_experiment=EXPERIMENT)


if __name__ == "__main__":
    raise SystemExit(main())
