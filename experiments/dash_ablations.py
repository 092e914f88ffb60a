"""Figures: LoRA-Dash's accuracy against t, s and the direction choice (the paper's ablations), one factor at a time.

Usage (from the repository root; ``make dash-ablations`` runs the sweeps and then this)::

    python -m experiments.dash_ablations --experiment dash_ablation_smoke --runs runs/dash_ablation \\
        --out results/figures --command "make dash-ablations"
    python -m experiments.dash_ablations --experiment dash_ablation_gpu --runs runs/dash_ablation_gpu \\
        --out results/figures --command "make dash-ablations SCALE=gpu ABLATION_SEEDS=3"

The design comes from the experiment's sweep grids (conf/sweep/dash_ablation_smoke, :func:`design_of`): the grids
that sweep one of t, s, select give the ablated method (LoRA-Dash) and the centre (the value each factor keeps in the
other grids: s = 8, t = 8, select = rate); the grid that sweeps none gives the reference method (LoRA); ``--centre-*``
override the centre. Reads the finished run folders of those two methods under ``--runs`` (one model, task and
rank). A LoRA-Dash run is a point of the factor in which it differs from the centre (the centre itself is a point of
every factor): accuracy vs t (pre-launch length, optimizer steps), vs s (number of directions) and vs select
(rate = the method, random, top_sigma, bottom_sigma = the paper's ablations). Each point is the mean over seeds, with
the sample standard deviation as an error bar when there are several seeds; plain LoRA of the same rank under the
same settings is the reference line. A value a factor's grid sweeps without a finished run (or a reference without
one) is named in the figure ("no finished run: …") and in ``problems``, never silently left out. Writes
``<out>/<name>_{t,s,select}.png`` and ``<out>/<name>.json`` (the plotted numbers, the runs behind each point and the
provenance: command, commits, hardware, seeds, scale, settings, runtime, from
:func:`experiments.report.provenance.collect`). ``<name>``: ``--name``, by default ``dash_ablation`` at smoke scale and
``dash_ablation_<scale>`` at any other (the experiment's ``scale_name``; ``dash_ablation_gpu``), and the captions and
titles name that scale. Runs of several commits or of a dirty tree are refused unless ``--allow-mixed-commits`` (exit
status 3; each run's commit is then in the JSON and the caption).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import grids
from experiments.report.cli import add_provenance_args, command_of, output_name, refuse, wall_s
from experiments.report.provenance import MixedCommitsError, Provenance, collect, relative
from experiments.report.render import commit_text
from experiments.report.table import mean_std
from experiments.report.vocabulary import display_method, display_model, display_scale
from experiments.runs import FINISHED, RunRecord, collect_runs
from spectune.io import write_json_atomic

NAME = "dash_ablation"
EXPERIMENT = "dash_ablation_smoke"
FACTORS = ("t", "s", "select")
SELECT_ORDER = ("rate", "random", "top_sigma", "bottom_sigma")
FACTOR_TEXT = {
    "t": "t: pre-launch length (optimizer steps of plain LoRA before the switch)",
    "s": "s: number of dash directions",
    "select": "select: how the s directions are chosen",
}


@dataclass(frozen=True)
class Design:
    """The ablation: ``method`` varied one factor at a time around ``centre``; ``reference``: the reference line's
    method (None: no reference); ``values``: the values each factor's grid sweeps."""

    method: str
    reference: str | None
    centre: dict[str, Any]
    values: dict[str, list[Any]] = field(default_factory=dict)


def _value(text: str) -> Any:
    """An override value as the config holds it (``8`` → 8)."""
    return int(text) if text.lstrip("-").isdigit() else text


def design_of(experiment: str = EXPERIMENT) -> Design:
    """The :class:`Design` of an experiment's sweep grids (module docstring); ``ValueError`` when they are not a
    one-factor-at-a-time design."""
    factor_grids: dict[str, grids.Grid] = {}
    others: list[grids.Grid] = []
    for grid in grids.load_grids(experiment):
        varying = [f for f in FACTORS if len(grid.axis(f"method.{f}")) > 1]
        if len(varying) > 1:
            raise ValueError(f"grid {experiment}/{grid.name} varies {varying}: one factor per grid")
        if varying:
            factor_grids[varying[0]] = grid
        else:
            others.append(grid)
    methods = {v for g in factor_grids.values() for v in g.axis("method")}
    if len(methods) != 1 or not factor_grids:
        raise ValueError(f"{experiment}'s factor grids ({sorted(factor_grids)}) must sweep one method; got {methods}")
    centre: dict[str, Any] = {}
    for factor in FACTORS:
        fixed = {v for name, g in factor_grids.items() if name != factor for v in g.axis(f"method.{factor}")}
        if len(fixed) > 1:
            raise ValueError(f"{experiment}: the grids that hold {factor} fixed disagree on it: {sorted(fixed)}")
        if fixed:
            centre[factor] = _value(fixed.pop())
    references = [v for g in others for v in g.axis("method")]
    return Design(method=methods.pop(), reference=references[0] if references else None, centre=centre,
                  values={f: [_value(v) for v in g.axis(f"method.{f}")] for f, g in factor_grids.items()})


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
    return relative(run, root)


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


def ablation_points(runs: Sequence[RunRecord], root: str | Path, centre: Mapping[str, Any], metric: str = "accuracy",
                    design: Design | None = None) -> dict[str, Any]:
    """The plotted numbers: per factor, the points (runs equal to the centre in the other two factors), the LoRA
    reference, and what could not be used or is missing (``problems``: failed/incomplete runs, runs off every axis,
    grid values and a reference without a finished run: :func:`missing_points`). ``design``:
    which methods are ablated and the reference (default: :func:`design_of` the default experiment).

    Only finished runs with the metric count; one value per seed and point (a second folder of the same seed is
    reported in ``problems`` and left out).
    """
    root = Path(root)
    design = design or design_of()
    problems: list[str] = []
    dash: dict[tuple[str, Any], dict[Any, RunRecord]] = {}
    lora: dict[Any, RunRecord] = {}
    ranks: set[int] = set()
    for run in runs:
        where = _relative(run, root)
        if run.method not in (design.method, design.reference):
            continue
        if run.status != FINISHED:
            problems.append(f"{where}: {run.status}" + (f" ({run.error.splitlines()[0][:120]})" if run.error else ""))
            continue
        if run.metric(metric) is None:
            problems.append(f"{where}: finished but no {metric}")
            continue
        if run.method == design.reference:
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
    baseline = _point(design.reference, list(lora.values()), metric, root) if lora else None
    if len(ranks) > 1:
        problems.append(f"runs of several ranks mixed: r = {sorted(ranks)}")
    missing = missing_points(factors, centre, design)
    for factor, values in missing.items():
        problems += [f"{factor}={value}: no finished run with {metric}; not plotted" for value in values]
    if design.reference is not None and baseline is None and design.values:
        problems.append(f"{display_method(design.reference)} reference: no finished run with {metric}; no reference "
                        "line")
    return {"factors": factors, "baseline": baseline, "problems": problems, "ranks": sorted(ranks)}


def missing_points(factors: Mapping[str, Sequence[Mapping[str, Any]]], centre: Mapping[str, Any], design: Design
                   ) -> dict[str, list[Any]]:
    """Per factor, the values its grid sweeps that have no plotted point (in the grid's order); empty when the centre
    is not the grids' (``--centre-*``: the grids' values then are not the design)."""
    if any(design.centre.get(f) != centre.get(f) for f in FACTORS):
        return {}
    out = {}
    for factor, values in design.values.items():
        plotted = {p["value"] for p in factors.get(factor, ())}
        if left := [v for v in values if v not in plotted]:
            out[factor] = left
    return out


def provenance(prov: Provenance, centre: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """The figures' provenance (the JSON's ``provenance``) from the collector's: scale, model, task, carve-out,
    seeds, settings, commits (each run's too), hardware, runtime, command."""
    return {
        "command": prov.command,
        "scale": prov.scales,
        "model": prov.models,
        "task": prov.tasks,
        "data_carve_out": prov.carve_out,
        "data_source": prov.sources,
        "seeds": prov.seeds,
        "metric": f"{metric} in % on the test carve-out",
        "centre": dict(centre),
        "training": prov.settings("train."),
        "optimizer_steps": prov.optimizer_steps,
        "commits": prov.commit_texts,
        "mixed_commits": prov.mixed,
        "run_commits": {c.run: c.text() for c in prov.commits},
        "hardware": prov.devices,
        "runs": sum(prov.counts.values()),
        "runtime_s_sum": None if prov.runtime_s_sum is None else round(prov.runtime_s_sum, 1),
        "wall_s": None if prov.wall_s is None else round(prov.wall_s, 1),
    }


def scale_caveat(scale: str) -> str:
    """The caption's first words: ``SMOKE SCALE, not a reproduction.``, ``GPU SCALE, not a reproduction.``;
    ``PAPER SCALE.``"""
    text = f"{display_scale(scale).upper()} SCALE"
    return f"{text}." if scale == "paper" else f"{text}, not a reproduction."


def caption(prov: Mapping[str, Any], ranks: Sequence[int], collected: Provenance, scale: str = "smoke") -> str:
    """One paragraph under each figure: ``scale``'s caveat (the experiment's scale), the runs' scale, model, data,
    seeds, settings, commit, hardware, runtime, command."""
    models = ", ".join(display_model(m) for m in prov["model"]) or "?"
    carve = "; ".join(f"{t}: {' | '.join(v)}" for t, v in prov["data_carve_out"].items()) or "not recorded"
    train = ", ".join(f"{k.removeprefix('train.')}={'|'.join(v)}" for k, v in prov["training"].items())
    centre = ", ".join(f"{k}={v}" for k, v in prov["centre"].items())
    commits = commit_text(collected, short=True)
    runtime = []
    if prov["runtime_s_sum"] is not None:
        runtime.append(f"sum of runtime_s {prov['runtime_s_sum'] / 60:.1f} min over {prov['runs']} runs")
    if prov["wall_s"] is not None:
        runtime.append(f"wall {prov['wall_s'] / 60:.1f} min")
    return (f"{scale_caveat(scale)} scale {', '.join(prov['scale']) or '?'}; model {models}; "
            f"r={', '.join(map(str, ranks)) or '?'}; task {', '.join(prov['task'])} ({carve}; "
            f"{', '.join(prov['data_source']) or 'source not recorded'}); {train}; optimizer steps "
            f"{', '.join(map(str, prov['optimizer_steps']))}; centre {centre}; seeds "
            f"{', '.join(map(str, prov['seeds']))}; commit {commits}; "
            f"hardware {'; '.join(prov['hardware']) or '?'}; {'; '.join(runtime) or 'runtime not recorded'}; "
            f"command: {prov['command']}")


def plot_factor(factor: str, points: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None,
                centre: Mapping[str, Any], path: Path, title: str, text: str, design: Design | None = None,
                missing: Sequence[Any] = ()) -> None:
    """One figure: accuracy (mean ± std) against the factor's values; the reference's mean (± std band) as a dashed
    line. Legend labels: the registry's names of ``design``'s methods. ``missing``: the factor's grid values without
    a finished run, named in the plot."""
    design = design or design_of()
    method, reference = display_method(design.method), display_method(design.reference)
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
                        label=f"{method} (centre: the method)" if centre_point else None)
        ax.set_xticks(xs, [str(v) for v in values])
        ax.set_xlim(-0.6, len(xs) - 0.4)
    else:
        ax.errorbar(xs, means, yerr=errs if any(errs) else None, marker="o", capsize=4, color="tab:blue",
                    label=method)
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [str(v) for v in values])
        ax.axvline(centre[factor], color="tab:blue", alpha=0.2, lw=6, label=f"centre {factor}={centre[factor]}")
    for x, p in zip(xs, points, strict=True):
        ax.annotate(f"{p['mean']:.1f}" + (f" ± {p['std']:.1f}" if p["std"] else "") + f" (n={p['n']})",
                    (x, p["mean"]), textcoords="offset points", xytext=(6, 4), ha="left", fontsize=7)
    if baseline is not None and baseline["mean"] is not None:
        ax.axhline(baseline["mean"], color="tab:red", ls="--", lw=1,
                   label=f"{reference} (same r, settings): {baseline['mean']:.1f} (n={baseline['n']})")
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
    if missing:
        ax.text(0.01, 0.99, f"no finished run: {factor} = {', '.join(map(str, missing))}", transform=ax.transAxes,
                va="top", ha="left", fontsize=7, color="tab:red")
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
    p.add_argument("--name", default=None,
                   help="file stem: <name>_{t,s,select}.png and <name>.json (default: dash_ablation at smoke scale, "
                        "dash_ablation_<scale> at any other: the experiment's scale)")
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--experiment", default=EXPERIMENT,
                   help="the experiment whose sweep grids give the design: ablated and reference method, centre")
    p.add_argument("--centre-s", type=int, default=None, help="default: the grids' centre")
    p.add_argument("--centre-t", type=int, default=None, help="default: the grids' centre")
    p.add_argument("--centre-select", default=None, choices=SELECT_ORDER, help="default: the grids' centre")
    add_provenance_args(p)
    args = p.parse_args(args_list)
    command = command_of(args, "experiments.dash_ablations", args_list)
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweeps first)", file=sys.stderr)
        return 2
    design = design_of(args.experiment)
    scale = grids.scale_of(args.experiment)
    name = args.name or output_name(NAME, scale)
    given = {"s": args.centre_s, "t": args.centre_t, "select": args.centre_select}
    centre = {f: given[f] if given[f] is not None else design.centre[f] for f in ("s", "t", "select")}
    runs = collect_runs(args.runs)
    data = ablation_points(runs, args.runs, centre, args.metric, design)
    if not any(data["factors"].values()):
        print(f"error: no finished LoRA-Dash runs with {args.metric} under {args.runs}", file=sys.stderr)
        return 2
    used_paths = {pt for pts in data["factors"].values() for point in pts for pt in point["runs"]}
    if data["baseline"]:
        used_paths.update(data["baseline"]["runs"])
    used = [r for r in runs if _relative(r, Path(args.runs)) in used_paths]
    try:
        collected = collect(used, runs_root=args.runs, command=command, what=f"the figures {name}",
                            wall_s=wall_s(args), allow_mixed_commits=args.allow_mixed_commits)
    except MixedCommitsError as err:
        return refuse(err)
    prov = provenance(collected, centre, args.metric)
    text = caption(prov, data["ranks"], collected, scale)
    missing = missing_points(data["factors"], centre, design)
    out = Path(args.out)
    files = []
    for factor in FACTORS:
        if not data["factors"][factor]:
            continue
        path = out / f"{name}_{factor}.png"
        plot_factor(factor, data["factors"][factor], data["baseline"], centre, path,
                    f"{display_method(design.method)} ablation over {factor} (others at the centre), "
                    f"{display_scale(scale)} scale", text, design, missing.get(factor, ()))
        files.append(path.name)
    write_json_atomic(out / f"{name}.json", {"caption": text, "provenance": prov, "figures": files, **data})
    for problem in data["problems"]:
        print(f"note: {problem}", file=sys.stderr)
    print(f"wrote {', '.join(str(out / f) for f in files)} and {out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
