"""Figure: overlap of LoRA's predicted task-specific directions with the true ones over training, per rank.

Reads the ``tsd`` events that ``analysis.tsd_reference`` runs write into metrics.jsonl (LoRA-Dash, Si et al. 2024:
recall = share of the true top-4 directions inside LoRA's top-8; accuracy = share of LoRA's top-8 inside the true
top-16, averaged over the adapted matrices) and plots both against the optimizer step, one line per rank.

    python -m experiments.tsd_figures --runs runs/tsd_tracking --out results/figures --command "make figures"

The caption's provenance (scale, model, hardware, commit, runtime, command) comes from
:func:`experiments.report.provenance.collect`: runs of several commits or of a dirty tree are refused unless
``--allow-mixed-commits`` (exit status 3; each run's commit is then in the caption and the JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.report.cli import add_provenance_args, command_of, refuse
from experiments.report.provenance import MixedCommitsError, collect
from experiments.report.render import commit_text
from experiments.runs import RunRecord, collect_runs
from spectune.io import write_json_atomic


def tsd_curves(runs_root: str | Path, runs: Sequence[RunRecord] | None = None) -> dict[str, list[dict]]:
    """Per run label (``<method> r=<rank> / <task> / seed``): the tsd events in step order."""
    curves: dict[str, list[dict]] = {}
    for run in collect_runs(runs_root) if runs is None else runs:
        metrics = Path(run.path) / "metrics.jsonl"
        if run.status != "finished" or not metrics.exists():
            continue
        events = [e for e in map(json.loads, metrics.read_text().splitlines()) if e.get("event") == "tsd"]
        if events:
            label = f"{run.method} r={run.rank} / {run.task} / seed {run.seed}"
            curves[label] = sorted(events, key=lambda e: e["step"])
    return curves


def plot(curves: dict[str, list[dict]], path: Path, title: str, caption: str) -> None:
    """Recall and accuracy of the predicted directions against the optimizer step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120, sharex=True)
    for label, events in sorted(curves.items(), key=lambda kv: kv[0]):
        steps = [e["step"] for e in events]
        axes[0].plot(steps, [e["recall"] for e in events], marker="o", ms=3, label=label)
        axes[1].plot(steps, [e["accuracy"] for e in events], marker="o", ms=3, label=label)
    axes[0].set_title("recall: true top-4 in LoRA's top-8", fontsize=9)
    axes[1].set_title("accuracy: LoRA's top-8 in true top-16", fontsize=9)
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean over adapted matrices")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.01, caption, fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 0 on success, 2 when there is nothing to plot, 3 on mixed commits."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m experiments.tsd_figures", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", default="runs/tsd_tracking")
    p.add_argument("--out", default="results/figures")
    p.add_argument("--name", default="tsd_overlap_over_training")
    add_provenance_args(p, started=False)
    args = p.parse_args(args_list)
    command = command_of(args, "experiments.tsd_figures", args_list)
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweeps first)", file=sys.stderr)
        return 2
    runs = collect_runs(args.runs)
    curves = tsd_curves(args.runs, runs)
    if not curves:
        print(f"error: no finished runs with tsd events under {args.runs}", file=sys.stderr)
        return 2
    try:  # the tracked runs and the full fine-tuning references they read: every finished run under --runs
        prov = collect([r for r in runs if r.status == "finished"], runs_root=args.runs, command=command,
                       what=f"the figure {args.name}", allow_mixed_commits=args.allow_mixed_commits)
    except MixedCommitsError as err:
        return refuse(err)
    caption = (f"scale {', '.join(prov.scales)}; model {', '.join(prov.models)}; reference ΔW* = a full fine-tuning "
               f"run of the same model, task and seed; hardware {'; '.join(prov.devices) or 'not recorded'}; "
               f"commit {commit_text(prov, short=True)}; command: {command}")
    out = Path(args.out)
    plot(curves, out / f"{args.name}.png", "LoRA's predicted TSD vs the true TSD over training", caption)
    write_json_atomic(out / f"{args.name}.json", {"caption": caption, "curves": curves,
                                                   "commits": prov.commit_texts,
                                                   "run_commits": {c.run: c.text() for c in prov.commits}})
    print(f"wrote {out / (args.name + '.png')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
