"""Does REINFORCE improve a 135M model on held-out prompts? The table of ``scripts/gpu/reinforce_gpu.sh``'s runs
(``conf/experiment/t2_rl_arc_easy_gpu.yaml``: full SmolLM2-135M-Instruct, ARC-Easy letter choice, embedded carve-out
400 train / 100 validation / 500 test, 128 prompts per iteration, 64 new tokens).

Rows: the untuned model (``score_task``: ``<runs>/<model>/base/<task>/seed<k>``) and every trained variant
(``<runs>/<experiment>/<model>/<method label>/<task>/seed<k><run_tag>``, one row per label + run tag). Per row and
seed: test exact match and the gold answers' bits per byte (Transformer²'s check and the continuous companion the
issue asks for), and for trained rows the iteration chosen by validation exact match. Per trained row: the paired
difference to the base model over seeds (same seed = same carve-out) with its 95% Student-t interval
(:mod:`experiments.report.paired`), and the verdict for "improves" (exact match up, bits per byte down).

    python -m experiments.t2_rl_study --runs results/runs/t2_rl --out results
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.report.cli import add_provenance_args, command_of, refuse, wall_s
from experiments.report.paired import Paired, paired
from experiments.report.provenance import MixedCommitsError, collect
from experiments.report.render import atomic_write_text, csv_text, fmt, markdown_table, provenance_lines
from experiments.runs import FINISHED, RunRecord, collect_runs

TASK = "t2_arc_easy"
NAME = "t2_rl_arc_easy_gpu"
METRICS = (("exact_match", True), ("bits_per_byte", False))  # (metric, higher is better)


def row_of(run: RunRecord) -> str:
    """``base`` for a score_task row, else ``<method label><run_tag>`` (e.g. ``svf-official-mlp-norm``)."""
    if (run.summary or {}).get("method") == "base" or "/base/" in run.path.as_posix():
        return "base"
    config = run.config or {}
    label = (config.get("method") or {}).get("label") or (run.summary or {}).get("method_label") or run.method
    return f"{label}{config.get('run_tag') or ''}"


def curve_of(run: RunRecord) -> dict[str, Any] | None:
    path = run.path / "rl_curve.json"
    return json.loads(path.read_text()) if path.exists() else None


def build(runs: Sequence[RunRecord]) -> tuple[list[str], list[list[Any]], list[str], dict[str, dict[str, Paired]]]:
    """Markdown/CSV header and rows, curve lines, and the paired differences per row and metric."""
    finished = [r for r in runs if r.status == FINISHED and r.seed is not None]
    by_row: dict[str, dict[int, RunRecord]] = {}
    for run in finished:
        by_row.setdefault(row_of(run), {})[run.seed] = run
    if "base" not in by_row:
        raise SystemExit("no base-model rows (python -m spectune.training.score_task ...) under the runs folder")
    values = {row: {m: {s: r.metric(m, TASK) for s, r in seeds.items()} for m, _ in METRICS}
              for row, seeds in by_row.items()}
    header = ["row", "seeds", "test exact match per seed", "Δ exact match vs base [95% CI]", "verdict",
              "test gold bits/byte per seed", "Δ bits/byte vs base [95% CI]", "verdict", "chosen iteration per seed"]
    rows, diffs, curves = [], {}, []
    for row in ["base", *sorted(r for r in by_row if r != "base")]:
        seeds = sorted(by_row[row])
        cells: list[Any] = [row, ",".join(map(str, seeds))]
        diffs[row] = {}
        for metric, higher in METRICS:
            v = values[row][metric]
            cells.append(" / ".join(fmt(v[s], 3) for s in seeds))
            if row == "base":
                cells += ["—", "—"]
                continue
            p = paired({s: x for s, x in v.items() if x is not None},
                       {s: x for s, x in values["base"][metric].items() if x is not None})
            diffs[row][metric] = p
            cells += [p.text(3), p.verdict(higher_is_better=higher)]
        chosen = []
        for s in seeds:
            c = curve_of(by_row[row][s])
            chosen.append("—" if c is None else str(c.get("best_iteration")))
            if c is not None:
                pts = ", ".join(f"{e['iteration']}: {e['exact_match']:.2f} / {e['bits_per_byte']:.3f}"
                                for e in c.get("evaluations", []))
                curves.append(f"- `{row}` seed {s} (validation exact match / bits per byte by iteration): {pts}")
        cells.append(" / ".join(chosen))
        rows.append(cells)
    return header, rows, curves, diffs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="results/runs/t2_rl", help="run folders (base rows and trained runs)")
    parser.add_argument("--out", default="results", help="writes <out>/tables/t2_rl_arc_easy_gpu.{md,csv}")
    add_provenance_args(parser)
    args = parser.parse_args(argv)
    runs = collect_runs(args.runs)
    command = command_of(args, "experiments.t2_rl_study", argv)
    try:
        prov = collect(runs, runs_root=args.runs, command=command, what=NAME, row_of=row_of, tasks=[TASK],
                       wall_s=wall_s(args), allow_mixed_commits=args.allow_mixed_commits)
    except MixedCommitsError as err:
        return refuse(err)
    header, rows, curves, _ = build(runs)
    md = ["# REINFORCE on ARC-Easy, full SmolLM2-135M-Instruct (GPU scale, not the paper's)", "",
          "Does Transformer²'s REINFORCE improve held-out prompts at 135M? Test split: 500 items never trained on or "
          "used for selection; the state is chosen by validation exact match (100 items), as the official code. "
          "Exact match by the official ARC check (a seeded guess when no letter is found); gold bits per byte = the "
          "reference answer's likelihood after the official prompt (lower is better). Δ = trained − base on the "
          "same seed's carve-out; interval: Student-t over seeds (`experiments/report/paired.py`); verdict for "
          "'improves' (supported only when the interval excludes 0).", "",
          *markdown_table(header, rows), "", "## Validation curves", "", *curves, "", "## Provenance", "",
          *provenance_lines(prov),
          "- **Scale**: the run folders record `smoke` (the default scale group; the experiment sets its own sizes): "
          "this is the GPU-scale setting of `conf/experiment/t2_rl_arc_easy_gpu.yaml`, not the paper's (LLaMA3-8B, "
          "512 tokens, 256 prompts, the official ARC-Easy train split). The paper reports no ARC-Easy number for a "
          "135M model; its Table 1 columns are in `results/tables/t2_table1_smoke.md`.",
          f"- **Command**: `{command}`; runs: `scripts/gpu/reinforce_gpu.sh` (log: `results/gpu/README.md`).", ""]
    out = Path(args.out) / "tables"
    atomic_write_text(out / f"{NAME}.md", "\n".join(md))
    atomic_write_text(out / f"{NAME}.csv", csv_text(header, rows))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
