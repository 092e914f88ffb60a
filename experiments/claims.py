"""The papers' headline claims against the committed runs: paired differences over seeds, 95% Student-t intervals,
a verdict per comparison (``experiments.report.paired``), written to ``results/tables/claims.md``.

Each comparison reads two cells of one study's run folders (``<runs>/<model>/<label>/<task>/seed<k>``, the same seeds
on both sides: same carve-out), one metric, and the direction the paper claims. The scale of every study is named:
none is the papers' scale, so a verdict says what *our* runs show, never whether the paper is right at its scale.

    python -m experiments.claims --out results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.report.paired import Paired, holm, paired
from experiments.report.render import atomic_write_text, markdown_table


@dataclass(frozen=True)
class Comparison:
    claim: str
    study: str          # where the runs are and at which scale
    runs: str           # run root
    ours: str           # folder path below the root up to the seed folders, e.g. smollm2/dash-r4-s8/commonsense
    theirs: str
    metric: str         # shown name
    read: Callable[[dict[str, Any]], float | None]  # eval_results.json -> value
    higher_is_better: bool
    seed_suffix: str = ""
    theirs_suffix: str | None = None  # the other side's seed-folder suffix (default: ``seed_suffix``)
    tasks: tuple[str, ...] = ()       # ``{task}`` in ours/theirs: the value per seed is the mean over these tasks


def mean_accuracy(res: dict[str, Any]) -> float | None:
    """Average accuracy over the tasks of a multi-task evaluation (LoRA-Dash Table 1's Avg), in %."""
    vals = [v["accuracy"] for k, v in res.items() if k != "primary" and isinstance(v, dict) and "accuracy" in v]
    return 100 * math.fsum(vals) / len(vals) if vals else None


def metric_of(task: str, name: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    def read(res: dict[str, Any]) -> float | None:
        value = (res.get(task) or {}).get(name)
        return None if value is None else scale * float(value)
    return read


def task_metric(name: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    """``name`` of a one-task evaluation's only task entry (Transformer²'s runs:
    ``{"t2_gsm8k": {...}, "primary": ...}``), so that one reader serves the cells of several tasks
    (``Comparison.tasks``)."""
    def read(res: dict[str, Any]) -> float | None:
        entries = [v for k, v in res.items() if k != "primary" and isinstance(v, dict)]
        if len(entries) != 1 or entries[0].get(name) is None:
            return None
        return scale * float(entries[0][name])
    return read


def accuracy_pct(res: dict[str, Any]) -> float | None:
    """The primary accuracy of a one-task evaluation (a GLUE task), in %."""
    value = (res.get("primary") or {}).get("value")
    return None if value is None else 100 * float(value)


T1G = "LoRA-Dash Table 1 at GPU scale: commonsense (8 tasks), SmolLM2-135M, 1 epoch (1,134 steps), H200"
T2G = "LoRA-Dash Table 2 at GPU scale: GLUE SST-2/RTE/MRPC, MiniLM, 270–480 steps, H200"
ABG = "LoRA-Dash ablation at GPU scale: SST-2, MiniLM, r = 8, s = 8, t = 30 of 480 steps, H200"
PLG = "PeriodicLoRA study at GPU scale: MMLU+GSM8K, SmolLM2-135M, 1 epoch (624 steps, 3 unloads), H200"
T1 = "LoRA-Dash Table 1, commonsense (8 tasks), SmolLM2-135M, smoke scale (16 steps), 2-core CPU"
PL = "PeriodicLoRA study, MMLU+GSM8K, SmolLM2-135M, smoke scale (64 steps), H200"
TT1G = ("Transformer² Table 1 at GPU scale: GSM8K/MBPP/ARC-Easy, full SmolLM2-135M, REINFORCE 10 iterations × 128 "
        "prompts, H200")
T2_SEEN = ("gsm8k", "mbpp", "arc_easy")
RL = "REINFORCE study, ARC-Easy, full SmolLM2-135M, GPU scale (15 iterations × 128 prompts), H200"
COMPARISONS = [
    *(Comparison("LoRA-Dash beats LoRA at equal rank (most at small r)", T1G, "results/runs/table1_commonsense_gpu",
                 f"smollm2/dash-r{r}-s8/commonsense", f"smollm2/lora-r{r}/commonsense", f"Avg accuracy % (r = {r})",
                 mean_accuracy, True) for r in (4, 8, 16)),
    *(Comparison("LoRA-Dash beats LoRA at equal rank (most at small r)", T2G, "results/runs/table2_glue_gpu",
                 f"minilm/dash-r{r}-s8/{{task}}", f"minilm/lora-r{r}/{{task}}", f"{name} accuracy % (r = {r})",
                 accuracy_pct, True, tasks=tasks)
      for r in (2, 8) for name, tasks in (("mean of SST-2, RTE, MRPC", ("sst2", "rte", "mrpc")), ("SST-2", ("sst2",)))),
    *(Comparison("Selecting directions by change rate beats random / top-σ / bottom-σ", ABG,
                 "results/runs/dash_ablation_gpu", "minilm/dash-r8-s8/sst2", "minilm/dash-r8-s8/sst2",
                 f"SST-2 accuracy % (rate vs {other})", accuracy_pct, True, "-t30-rate", f"-t30-{other}")
      for other in ("random", "top_sigma", "bottom_sigma")),
    *(Comparison("PeriodicLoRA learns more than LoRA at equal rank", PLG, "results/runs/plora_gpu",
                 f"smollm2/plora-r{r}-m{m}/mmlu_gsm8k", f"smollm2/lora-r{r}/mmlu_gsm8k",
                 f"GSM8K gold bits/byte (r = {r}, {'plain' if m == '0.0' else 'momentum m = ' + m})",
                 metric_of("gsm8k", "bits_per_byte"), False) for r in (1, 8) for m in ("0.0", "0.9")),
    *(Comparison("SVF beats LoRA with far fewer parameters", TT1G, "results/runs/t2_table1_gpu",
                 "smollm2/svf-official-mlp/t2_{task}", "smollm2/lora-r16/t2_{task}", name, task_metric(key, scale),
                 higher, tasks=tasks)
      for name, key, scale, higher, tasks in (
          ("Avg test exact match % (3 tasks)", "exact_match", 100.0, True, T2_SEEN),
          *((f"{t.replace('_', '-')} test exact match %", "exact_match", 100.0, True, (t,)) for t in T2_SEEN),
          ("mean test gold bits/byte (3 tasks)", "bits_per_byte", 1.0, False, T2_SEEN))),
    *(Comparison("SVF beats LoRA with far fewer parameters", RL, "results/runs/t2_rl",
                 "t2_rl_arc_easy/smollm2/svf-official-mlp/t2_arc_easy", "t2_rl_arc_easy/smollm2/lora-r16/t2_arc_easy",
                 name, metric_of("t2_arc_easy", key, scale), higher, "-norm")
      for name, key, scale, higher in (("test exact match %", "exact_match", 100.0, True),
                                       ("test gold bits/byte", "bits_per_byte", 1.0, False))),
    *(Comparison("LoRA-Dash beats LoRA at equal rank (most at small r)", T1, "results/runs/table1_commonsense",
                 f"smollm2/dash-r{r}-s8/commonsense", f"smollm2/lora-r{r}/commonsense", f"Avg accuracy % (r = {r})",
                 mean_accuracy, True) for r in (4, 8, 16)),
    *(Comparison("PeriodicLoRA learns more than LoRA at equal rank", PL, "results/runs/plora",
                 f"smollm2/plora-r{r}-m{m}/mmlu_gsm8k", f"smollm2/lora-r{r}/mmlu_gsm8k",
                 f"GSM8K gold bits/byte (r = {r}, {'plain' if m == '0.0' else 'momentum m = ' + m})",
                 metric_of("gsm8k", "bits_per_byte"), False) for r in (1, 8) for m in ("0.0", "0.9")),
]


def values(root: Path, cell: str, read: Callable[[dict[str, Any]], float | None], suffix: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for seed_dir in sorted((root / cell).glob(f"seed*{suffix}")):
        name = seed_dir.name.removesuffix(suffix).removeprefix("seed")
        res_path = seed_dir / "eval_results.json"
        if name.isdigit() and res_path.exists():
            value = read(json.loads(res_path.read_text()))
            if value is not None:
                out[int(name)] = value
    return out


def task_mean(root: Path, cell: str, read: Callable[[dict[str, Any]], float | None], suffix: str,
              tasks: Sequence[str]) -> dict[int, float]:
    """Per seed, the mean of ``read`` over the cells ``cell.format(task=t)``; only seeds that have every task."""
    if not tasks:
        return values(root, cell, read, suffix)
    per_task = [values(root, cell.format(task=t), read, suffix) for t in tasks]
    seeds = set.intersection(*(set(v) for v in per_task))
    return {k: math.fsum(v[k] for v in per_task) / len(per_task) for k in sorted(seeds)}


def label(c: Comparison, cell: str, suffix: str) -> str:
    """How a side is shown: its method folder, and the seed suffix when the two sides differ only there."""
    return f"`{cell.split('/')[-2]}{suffix if c.theirs_suffix is not None else ''}`"


def theirs_suffix_of(c: Comparison) -> str:
    """The other side's seed-folder suffix: ``theirs_suffix`` when set, else the comparison's ``seed_suffix``."""
    return c.seed_suffix if c.theirs_suffix is None else c.theirs_suffix


def sides(c: Comparison) -> str:
    """The row's difference as shown: ``ours − theirs``."""
    return f"{label(c, c.ours, c.seed_suffix)} − {label(c, c.theirs, theirs_suffix_of(c))}"


def pair(repo: Path, c: Comparison) -> Paired:
    """The comparison's paired differences ours − theirs over the seeds both sides have."""
    ours = task_mean(repo / c.runs, c.ours, c.read, c.seed_suffix, c.tasks)
    theirs = task_mean(repo / c.runs, c.theirs, c.read, theirs_suffix_of(c), c.tasks)
    return paired(ours, theirs)


def family(c: Comparison) -> str:
    """The family a row's p-value is adjusted within: its scale (GPU-scale studies or smoke-scale ones)."""
    return "gpu" if "GPU scale" in c.study else "smoke"


def holm_by_family(comparisons: Sequence[Comparison], pairs: Sequence[Paired]) -> dict[int, float | None]:
    """Each row's Holm-adjusted p-value within its family (:func:`family`), by row index."""
    adjusted: dict[int, float | None] = {}
    for fam in {family(c) for c in comparisons}:
        idx = [i for i, c in enumerate(comparisons) if family(c) == fam]
        adjusted.update(zip(idx, holm([pairs[i].p_value for i in idx]), strict=True))
    return adjusted


def build(repo: Path, comparisons: Sequence[Comparison] = COMPARISONS) -> list[list[str]]:
    pairs = [pair(repo, c) for c in comparisons]
    adjusted = holm_by_family(comparisons, pairs)
    rows = []
    for i, (c, p) in enumerate(zip(comparisons, pairs, strict=True)):
        per_seed = ", ".join(f"{d:+.3f}" for d in p.diffs) or "no paired seeds"
        pv = "—" if p.p_value is None else f"{p.p_value:.3f} ({adjusted[i]:.2f})"
        rows.append([c.claim, c.metric, sides(c),
                     str(p.n), per_seed, p.text(3), p.verdict(c.higher_is_better), pv, c.study])
    return rows


def plot(repo: Path, path: Path, comparisons: Sequence[Comparison] = COMPARISONS) -> Path:
    """Forest plot of every comparison with at least one paired seed: the mean difference turned so that right is
    the paper's direction (lower-is-better metrics negated), its 95% interval, and each seed's difference as a dot;
    one panel per unit (accuracy points, bits per byte), GPU-scale studies above the smoke-scale ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [pair(repo, c) for c in comparisons]
    adjusted = holm_by_family(comparisons, pairs)
    panels: dict[str, list[tuple[str, Paired, float, float | None]]] = {"accuracy points": [], "bits per byte": []}
    for i, (c, p) in enumerate(zip(comparisons, pairs, strict=True)):
        if not p.n:
            continue
        unit = "bits per byte" if "bits/byte" in c.metric else "accuracy points"
        scale_name = "GPU" if family(c) == "gpu" else "smoke"
        study = c.study.split(":")[0].split(",")[0].replace(" at GPU scale", "")
        name = f"[{scale_name}] {study}, {c.metric}: {sides(c).replace('`', '')}"
        panels[unit].append((name, p, 1.0 if c.higher_is_better else -1.0, adjusted[i]))
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        raise ValueError("no comparison has a paired seed: nothing to plot (are the run folders under results/runs?)")
    heights = [len(v) for v in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 0.42 * sum(heights) + 1.6 * len(panels)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (unit, rows) in zip(axes[:, 0], panels.items(), strict=True):
        for i, (_name, p, sign, p_holm) in enumerate(rows):
            y = len(rows) - 1 - i
            ax.scatter([sign * d for d in p.diffs], [y] * p.n, s=12, color="0.6", zorder=2)
            if p.low is not None and p.high is not None and p.mean is not None:
                lo, hi = sorted((sign * p.low, sign * p.high))
                color = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:blue"
                ax.plot([lo, hi], [y, y], color=color, lw=2, zorder=1)
                strong = p_holm is not None and p_holm < 1 - p.level  # survives Holm within its scale's family
                ax.scatter([sign * p.mean], [y], s=36, zorder=3, color=color if strong else "white", edgecolors=color,
                           linewidths=1.5)
            ax.text(1.01, y, f"n={p.n}", transform=ax.get_yaxis_transform(), va="center", fontsize=7)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=7)
        ax.set_xlabel(f"paired difference, {unit} (right = the paper's claimed direction)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("The papers' claims against our runs: mean paired difference over seeds, 95% Student-t "
                         "interval\n(green: supported, red: contradicted, blue: inconclusive; grey dots: the seeds; "
                         "n = 1: no interval; a filled mean: Holm-adjusted p < 0.05 within its scale's rows, "
                         "hollow: not)", fontsize=9, x=0.01, ha="left")
    fig.text(0.01, 0.005, "None of these studies is at a paper's scale. `python -m experiments.claims`; "
             "results/tables/claims.md lists every row with its study.", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results", help="writes <out>/tables/claims.md")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    repo = Path(__file__).resolve().parents[1]
    header = ["claim", "metric", "difference", "seeds", "per seed", "mean [95% CI]", "verdict", "p (Holm)", "study"]
    md = ["# The papers' claims against our runs", "",
          "Paired by seed (same carve-out on both sides), 95% Student-t interval over seeds "
          "(`experiments/report/paired.py`); verdict for the paper's direction: *supported* when the interval lies "
          "on that side of 0, *contradicted* when on the other, else *inconclusive*. **No study here is at the "
          "papers' scale** (each names its own): a verdict is about our runs, not about the paper at its scale. "
          "GPU-scale rows come first; a row with 1 seed has no interval and is inconclusive by construction. The "
          "smoke-scale rows are kept below them for comparison. Each interval is 95% for its own row, so across "
          "many rows some exclude 0 by chance when no effect exists; *p (Holm)* gives each row's two-sided paired "
          "t-test p-value and, in brackets, its Holm-adjusted value within its scale's family of rows (GPU-scale "
          "rows, smoke-scale rows), which bounds the chance of any false verdict in the family at the stated "
          "level: a verdict whose adjusted p is above 0.05 may be one of those chance exclusions.", "",
          *markdown_table(header, build(repo)), "",
          "Figure: `results/figures/claims.png` (the same rows as a forest plot).", "",
          "Command: `python -m experiments.claims`; the run folders' commits and hardware are in each study's table "
          "(`results/tables/table1_commonsense_gpu.md`, `table2_glue_gpu.md`, `plora_gpu.md`, "
          "`results/figures/dash_ablation_gpu.json`, `t2_table1_gpu.md`, `results/tables/table1_commonsense.md`, "
          "`plora_smoke.md`, "
          "`t2_rl_arc_easy_gpu.md`).", ""]
    atomic_write_text(Path(args.out) / "tables" / "claims.md", "\n".join(md))
    plot(repo, Path(args.out) / "figures" / "claims.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
