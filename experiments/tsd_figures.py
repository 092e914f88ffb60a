"""Figure: overlap of LoRA's predicted task-specific directions with the true ones over training, per rank.

Reads the ``tsd`` events that ``analysis.tsd_reference`` runs write into metrics.jsonl (LoRA-Dash, Si et al. 2024:
recall = share of the true top-4 directions inside LoRA's top-8; accuracy = share of LoRA's top-8 inside the true
top-16, averaged over the adapted matrices) and plots both against the optimizer step, one line per rank.

    python -m experiments.tsd_figures --runs runs/tsd_tracking --out results/figures --command "make figures"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.runs import collect_runs
from spectune.io import write_json_atomic


def tsd_curves(runs_root: str | Path) -> dict[str, list[dict]]:
    """Per run label (``<method> r=<rank> / <task> / seed``): the tsd events in step order."""
    curves: dict[str, list[dict]] = {}
    for run in collect_runs(runs_root):
        metrics = Path(run.path) / "metrics.jsonl"
        if run.status != "finished" or not metrics.exists():
            continue
        events = [e for e in map(json.loads, metrics.read_text().splitlines()) if e.get("event") == "tsd"]
        if events:
            label = f"{run.method} r={run.rank} / {run.task} / seed {run.seed}"
            curves[label] = sorted(events, key=lambda e: e["step"])
    return curves


def plot(curves: dict[str, list[dict]], path: Path, title: str, caption: str) -> None:
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
    p = argparse.ArgumentParser(prog="python -m experiments.tsd_figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/tsd_tracking")
    p.add_argument("--out", default="results/figures")
    p.add_argument("--name", default="tsd_overlap_over_training")
    p.add_argument("--command", default="make figures")
    args = p.parse_args(argv)
    curves = tsd_curves(args.runs)
    if not curves:
        print(f"error: no finished runs with tsd events under {args.runs}", file=sys.stderr)
        return 2
    runs = collect_runs(args.runs)
    commits = sorted({r.commit for r in runs if r.commit})
    models = sorted({r.model for r in runs if r.model})
    scales = sorted({r.scale for r in runs if r.scale})
    hardware = sorted({json.dumps((r.environment or {}).get("device", {}).get("name")) for r in runs})
    caption = (f"scale {', '.join(scales)}; model {', '.join(models)}; reference ΔW* = a full fine-tuning run of the "
               f"same model, task and seed; hardware {', '.join(hardware)}; "
               f"commit {', '.join(c[:7] for c in commits)}; "
               f"command: {args.command}")
    out = Path(args.out)
    plot(curves, out / f"{args.name}.png", "LoRA's predicted TSD vs the true TSD over training", caption)
    write_json_atomic(out / f"{args.name}.json", {"caption": caption, "curves": curves})
    print(f"wrote {out / (args.name + '.png')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
