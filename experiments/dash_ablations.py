"""Figures: LoRA-Dash's accuracy against t, s and the direction choice (the paper's ablations), one factor at a time.

Usage (from the repository root; ``make dash-ablations`` runs the sweeps and then this)::

    python -m experiments.dash_ablations --runs runs/dash_ablation --out results/figures --command "make dash-ablations"

Reads the finished LoRA-Dash and LoRA run folders under ``--runs`` (one model, task and rank). A LoRA-Dash run is a
point of the factor in which it differs from the centre (default s = 8, t = 8, select = rate; the centre itself is a
point of every factor): accuracy vs t (pre-launch length, optimizer steps), vs s (number of directions) and vs select
(rate = the method, random, top_sigma, bottom_sigma = the paper's ablations). Each point is the mean over seeds, with
the sample standard deviation as an error bar when there are several seeds; plain LoRA of the same rank under the
same settings is the reference line. Writes ``<out>/<name>_{t,s,select}.png`` and ``<out>/<name>.json`` (the plotted
numbers, the runs behind each point and the provenance: command, commit, hardware, seeds, scale, settings, runtime).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.runs import FINISHED, RunRecord, collect_runs
from experiments.tables import (
    _git_of,
    carve_out_sizes,
    data_sources,
    describe_device,
    display_model,
    mean_std,
    training_settings,
)
from spectune.io import write_json_atomic

NAME = "dash_ablation"
FACTORS = ("t", "s", "select")
SELECT_ORDER = ("rate", "random", "top_sigma", "bottom_sigma")
FACTOR_TEXT = {
    "t": "t: pre-launch length (optimizer steps of plain LoRA before the switch)",
    "s": "s: number of dash directions",
    "select": "select: how the s directions are chosen",
}


def dash_settings(run: RunRecord) -> dict[str, Any] | None:
    """``{"r", "s", "t", "select", "count"}`` of a LoRA-Dash run from its config.yaml; None if not readable."""
    method = (run.config or {}).get("method")
    if not isinstance(method, Mapping):
        return None
    settings = {k: method.get(k) for k in ("r", "s", "t", "select", "count")}
    if not all(isinstance(settings[k], int) and not isinstance(settings[k], bool) for k in ("r", "s", "t")):
        return None
    if not isinstance(settings["select"], str):
        return None
    return settings


def _relative(run: RunRecord, root: Path) -> str:
    try:
        return str(run.path.relative_to(root))
    except ValueError:
        return str(run.path)


def _point(value: Any, runs: Sequence[RunRecord], metric: str, root: Path) -> dict[str, Any]:
    """One plotted point: per-seed values (in %), mean, sample std, n, seeds and the run folders."""
    per_seed = sorted(((r.seed, 100.0 * r.metric(metric), _relative(r, root)) for r in runs
                       if r.metric(metric) is not None), key=lambda x: (x[0] is None, x[0] or 0, x[2]))
    mean, std, n = mean_std([v for _, v, _ in per_seed])
    return {"value": value, "mean": mean, "std": std, "n": n, "seeds": [s for s, _, _ in per_seed],
            "values": [v for _, v, _ in per_seed], "runs": [p for _, _, p in per_seed]}


def _sort_key(factor: str, value: Any) -> tuple:
    if factor == "select":
        return (SELECT_ORDER.index(value) if value in SELECT_ORDER else len(SELECT_ORDER), str(value))
    return (0, value)


def ablation_points(runs: Sequence[RunRecord], root: str | Path, centre: Mapping[str, Any], metric: str = "accuracy"
                    ) -> dict[str, Any]:
    """The plotted numbers: per factor, the points (runs equal to the centre in the other two factors), the LoRA
    reference, and what could not be used (``problems``: failed/incomplete runs, runs off every axis).

    Only finished runs with the metric count; one value per seed and point (a second folder of the same seed is
    reported in ``problems`` and left out).
    """
    root = Path(root)
    problems: list[str] = []
    dash: dict[tuple[str, Any], dict[Any, RunRecord]] = {}
    lora: dict[Any, RunRecord] = {}
    ranks: set[int] = set()
    for run in runs:
        where = _relative(run, root)
        if run.method not in ("lora", "lora_dash"):
            continue
        if run.status != FINISHED:
            problems.append(f"{where}: {run.status}" + (f" ({run.error.splitlines()[0][:120]})" if run.error else ""))
            continue
        if run.metric(metric) is None:
            problems.append(f"{where}: finished but no {metric}")
            continue
        if run.method == "lora":
            if run.seed in lora:
                problems.append(f"{where}: second LoRA folder for seed {run.seed}; left out")
                continue
            lora[run.seed] = run
            if run.rank is not None:
                ranks.add(run.rank)
            continue
        settings = dash_settings(run)
        if settings is None:
            problems.append(f"{where}: LoRA-Dash run without readable method.s/t/select in config.yaml")
            continue
        ranks.add(settings["r"])
        placed = False
        for factor in FACTORS:
            others = [f for f in FACTORS if f != factor]
            if all(settings[f] == centre[f] for f in others):
                cell = dash.setdefault((factor, settings[factor]), {})
                if run.seed in cell:
                    problems.append(f"{where}: second folder for {factor}={settings[factor]} seed {run.seed}; "
                                    "left out")
                    continue
                cell[run.seed] = run
                placed = True
        if not placed:
            problems.append(f"{where}: s={settings['s']}, t={settings['t']}, select={settings['select']} differs "
                            f"from the centre in more than one factor; not plotted")
    factors: dict[str, list[dict[str, Any]]] = {}
    for factor in FACTORS:
        values = sorted({v for f, v in dash if f == factor}, key=lambda v: _sort_key(factor, v))
        factors[factor] = [_point(v, list(dash[(factor, v)].values()), metric, root) for v in values]
    baseline = _point("lora", list(lora.values()), metric, root) if lora else None
    if len(ranks) > 1:
        problems.append(f"runs of several ranks mixed: r = {sorted(ranks)}")
    return {"factors": factors, "baseline": baseline, "problems": problems, "ranks": sorted(ranks)}


def provenance(runs: Sequence[RunRecord], command: str, centre: Mapping[str, Any], metric: str,
               wall_s: float | None) -> dict[str, Any]:
    """Caption facts of the runs used: scale, model, task, carve-out, seeds, settings, commits, hardware, runtime."""
    carve: dict[str, set[str]] = {}
    sources: set[str] = set()
    settings: dict[str, set[str]] = {}
    steps: set[int] = set()
    for run in runs:
        for task, sizes in carve_out_sizes(run.data_indices, run.task).items():
            carve.setdefault(task, set()).add(", ".join(f"{k} {v}" for k, v in sorted(sizes.items(), reverse=True)))
        kinds, _ = data_sources(run.data_indices)
        sources.update(kinds)
        for key, value in training_settings(run.config).items():
            if key.startswith("train."):
                settings.setdefault(key, set()).add(value)
        if isinstance((run.summary or {}).get("train_steps"), int):
            steps.add(run.summary["train_steps"])
    durations = [r.runtime_s for r in runs if r.runtime_s is not None]
    return {
        "command": command,
        "scale": sorted({r.scale for r in runs if r.scale}),
        "model": sorted({r.model for r in runs if r.model}),
        "task": sorted({r.task for r in runs if r.task}),
        "data_carve_out": {task: sorted(v) for task, v in carve.items()},
        "data_source": sorted(sources),
        "seeds": sorted({r.seed for r in runs if r.seed is not None}),
        "metric": f"{metric} in % on the test carve-out",
        "centre": dict(centre),
        "training": {k: sorted(v) for k, v in sorted(settings.items())},
        "optimizer_steps": sorted(steps),
        "commits": sorted({c for c in map(_git_of, runs) if c}),
        "hardware": sorted({d for d in (describe_device(r.environment) for r in runs) if d}),
        "runs": len(runs),
        "runtime_s_sum": round(math.fsum(durations), 1) if durations else None,
        "wall_s": None if wall_s is None else round(wall_s, 1),
    }


def caption(prov: Mapping[str, Any], ranks: Sequence[int]) -> str:
    """One paragraph under each figure: scale, model, data, seeds, settings, commit, hardware, runtime, command."""
    models = ", ".join(display_model(m) for m in prov["model"]) or "?"
    carve = "; ".join(f"{t}: {' | '.join(v)}" for t, v in prov["data_carve_out"].items()) or "not recorded"
    train = ", ".join(f"{k.removeprefix('train.')}={'|'.join(v)}" for k, v in prov["training"].items())
    centre = ", ".join(f"{k}={v}" for k, v in prov["centre"].items())
    commits = ", ".join(c[:7] + (" (dirty)" if c.endswith("(dirty)") else "") for c in prov["commits"])
    runtime = []
    if prov["runtime_s_sum"] is not None:
        runtime.append(f"sum of runtime_s {prov['runtime_s_sum'] / 60:.1f} min over {prov['runs']} runs")
    if prov["wall_s"] is not None:
        runtime.append(f"wall {prov['wall_s'] / 60:.1f} min")
    return (f"SMOKE SCALE, not a reproduction. scale {', '.join(prov['scale']) or '?'}; model {models}; "
            f"r={', '.join(map(str, ranks)) or '?'}; task {', '.join(prov['task'])} ({carve}; "
            f"{', '.join(prov['data_source']) or 'source not recorded'}); {train}; optimizer steps "
            f"{', '.join(map(str, prov['optimizer_steps']))}; centre {centre}; seeds "
            f"{', '.join(map(str, prov['seeds']))}; commit {commits or 'not recorded'}; "
            f"hardware {'; '.join(prov['hardware']) or '?'}; {'; '.join(runtime) or 'runtime not recorded'}; "
            f"command: {prov['command']}")


def plot_factor(factor: str, points: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None,
                centre: Mapping[str, Any], path: Path, title: str, text: str) -> None:
    """One figure: accuracy (mean ± std) against the factor's values; LoRA's mean (± std band) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    values = [p["value"] for p in points]
    means = [p["mean"] for p in points]
    errs = [p["std"] or 0.0 for p in points]
    xs = list(range(len(points))) if factor == "select" else values
    if factor == "select":
        for x, value, mean, err in zip(xs, values, means, errs, strict=True):
            centre_point = value == centre["select"]
            ax.errorbar([x], [mean], yerr=[err] if err else None, marker="o", ms=7 if centre_point else 5,
                        capsize=4, color="tab:blue" if centre_point else "tab:gray", ls="none",
                        label="LoRA-Dash (centre: the method)" if centre_point else None)
        ax.set_xticks(xs, [str(v) for v in values])
        ax.set_xlim(-0.6, len(xs) - 0.4)
    else:
        ax.errorbar(xs, means, yerr=errs if any(errs) else None, marker="o", capsize=4, color="tab:blue",
                    label="LoRA-Dash")
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [str(v) for v in values])
        ax.axvline(centre[factor], color="tab:blue", alpha=0.2, lw=6, label=f"centre {factor}={centre[factor]}")
    for x, p in zip(xs, points, strict=True):
        ax.annotate(f"{p['mean']:.1f}" + (f" ± {p['std']:.1f}" if p["std"] else "") + f" (n={p['n']})",
                    (x, p["mean"]), textcoords="offset points", xytext=(6, 4), ha="left", fontsize=7)
    if baseline is not None and baseline["mean"] is not None:
        ax.axhline(baseline["mean"], color="tab:red", ls="--", lw=1,
                   label=f"LoRA (same r, settings): {baseline['mean']:.1f} (n={baseline['n']})")
        if baseline["std"]:
            ax.axhspan(baseline["mean"] - baseline["std"], baseline["mean"] + baseline["std"], color="tab:red",
                       alpha=0.08)
    ax.set_xlabel(FACTOR_TEXT[factor])
    ax.set_ylabel("accuracy (%)")
    lows = [m - e for m, e in zip(means, errs, strict=True)] + ([baseline["mean"]] if baseline and baseline["mean"]
                                                                else [])
    highs = [m + e for m, e in zip(means, errs, strict=True)] + ([baseline["mean"]] if baseline and baseline["mean"]
                                                                  else [])
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 6), min(100.0, max(highs) + 8))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    fig.text(0.01, 0.01, text, fontsize=5.5, wrap=True)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 0 on success, 2 when there is nothing to plot."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m experiments.dash_ablations", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--runs", default=f"runs/{NAME}", help="root of the run folders")
    p.add_argument("--out", default="results/figures")
    p.add_argument("--name", default=NAME, help="file stem: <name>_{t,s,select}.png and <name>.json")
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--centre-s", type=int, default=8)
    p.add_argument("--centre-t", type=int, default=8)
    p.add_argument("--centre-select", default="rate", choices=SELECT_ORDER)
    p.add_argument("--command", default=None, help="the command that produced the figures (default: this one)")
    p.add_argument("--started", type=float, default=None, help="Unix time the command started (for its wall time)")
    args = p.parse_args(args_list)
    command = args.command or shlex.join(["python", "-m", "experiments.dash_ablations", *args_list])
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweeps first)", file=sys.stderr)
        return 2
    centre = {"s": args.centre_s, "t": args.centre_t, "select": args.centre_select}
    runs = collect_runs(args.runs)
    data = ablation_points(runs, args.runs, centre, args.metric)
    if not any(data["factors"].values()):
        print(f"error: no finished LoRA-Dash runs with {args.metric} under {args.runs}", file=sys.stderr)
        return 2
    used_paths = {pt for pts in data["factors"].values() for point in pts for pt in point["runs"]}
    if data["baseline"]:
        used_paths.update(data["baseline"]["runs"])
    used = [r for r in runs if _relative(r, Path(args.runs)) in used_paths]
    wall_s = None if args.started is None else max(0.0, time.time() - args.started)
    prov = provenance(used, command, centre, args.metric, wall_s)
    text = caption(prov, data["ranks"])
    out = Path(args.out)
    files = []
    for factor in FACTORS:
        if not data["factors"][factor]:
            continue
        path = out / f"{args.name}_{factor}.png"
        plot_factor(factor, data["factors"][factor], data["baseline"], centre, path,
                    f"LoRA-Dash ablation over {factor} (others at the centre), smoke scale", text)
        files.append(path.name)
    write_json_atomic(out / f"{args.name}.json", {"caption": text, "provenance": prov, "figures": files, **data})
    for problem in data["problems"]:
        print(f"note: {problem}", file=sys.stderr)
    print(f"wrote {', '.join(str(out / f) for f in files)} and {out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
