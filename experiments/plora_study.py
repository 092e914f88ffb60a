"""PeriodicLoRA's study: LoRA vs PLoRA (plain, momentum) vs full FT — benchmarks, "learning ability", accumulated rank.

Usage (``make reproduce-plora`` runs the grids of conf/sweep/plora_<scale>, then these)::

    python -m spectune.training.base_model --experiment plora_smoke --runs runs/plora   # the untrained model's row
    python -m experiments.plora_study report --experiment plora_smoke --runs runs/plora --out results \\
        --command "make reproduce-plora"

``report`` writes ``<out>/tables/plora_<scale>.md`` / ``.csv`` and ``<out>/figures/plora_rank_<scale>.png`` / ``.json``
(``make reproduce-plora SCALE=gpu``: ``plora_gpu.md``, ``plora_rank_gpu.png``); the heading, the caveat and the
figure's caption name the scale. The stage length (for the last-stage loss) is the grids' ``method.unload_every``
unless ``--stage`` is given. The rows are the untrained model's and every (method, rank, momentum) of the experiment's
sweep grids (``--experiment``, default ``plora_<scale>``): a row without a finished run reads ``not run`` (``no
finished run`` when its folders failed or are incomplete; they are listed under the table), never dropped. Runs of
several commits or of a dirty tree are refused unless ``--allow-mixed-commits`` (exit status 3).

Definitions (docs/plora.md):
- Benchmarks (embedded data, gold-answer likelihood): MMLU accuracy (%), GSM8K bits per byte of the gold solution
  (lower is better). Not GSM8K exact match.
- Loss drop ΔL = first logged training loss − mean training loss over the last stage (the last ``stage`` steps).
- Rows: one per (method, rank, momentum) with the registry's labels; a row with a momentum (PeriodicLoRA's) is the
  studied method, the row of the same rank without one (LoRA's) its yardstick.
- Learning-ability ratio (our reading of Meng et al.'s "≈1.8× LoRA's learning ability"; the paper's exact formula
  was not available to us): PLoRA's gain over LoRA's at the same rank, for the loss drop, ΔL_PLoRA / ΔL_LoRA, and for
  a benchmark, (score − base) / (score_LoRA − base) (bits per byte: base − score), base = the untrained model.
- Accumulated update W_final − W_0 per adapted matrix: numerical, stable and effective rank (means over matrices)
  and the total ‖ΔW‖_F, from the runs' ``update_rank`` events (``analysis.rank_every``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from experiments import grids
from experiments.report.cli import add_provenance_args, command_of, refuse
from experiments.report.provenance import MixedCommitsError, Provenance, collect
from experiments.report.render import commit_text, csv_text, markdown_table
from experiments.report.table import mean_std
from experiments.report.vocabulary import BASE, display_method, display_model, display_task, has_rank, method_order
from experiments.runs import FINISHED, RunRecord, collect_runs, problem_report
from spectune.io import write_json_atomic, write_text_atomic


# ----------------------------------------------------------------------------------------------------- reading runs
def _events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """Events of ``kind`` as the run's final history: each life (from a ``start`` event) supersedes what earlier lives
    logged from its first training step on — a resume from checkpoint k re-logs k+1…, a restart without a checkpoint
    re-logs everything from step 1."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lives: list[list[dict[str, Any]]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        if e.get("event") == "start" or not lives:
            lives.append([])
        lives[-1].append(e)
    history: list[dict[str, Any]] = []
    for life in lives:
        steps = [e["step"] for e in life if e.get("event") == "train" and e.get("step") is not None]
        if steps:
            history = [e for e in history if e.get("step") is None or e["step"] < min(steps)]
        history += life
    return [e for e in history if e.get("event") == kind]


def variant(config: dict[str, Any]) -> tuple[str, int | None, float | None]:
    """(method, rank, momentum) of a run: the table's row key (momentum: None for a method without one)."""
    m = config.get("method", {})
    name = m.get("name")
    return name, m.get("r") if has_rank(name) else None, m.get("momentum")


def row_label(key: tuple[str, int | None, float | None]) -> str:
    """``FT``, ``LoRA r=8``, ``PeriodicLoRA r=8 (plain unload)``, ``PeriodicLoRA r=8 momentum 0.9`` (registry
    labels), ``base model (untrained)``."""
    name, r, mom = key
    if name == BASE:
        return "base model (untrained)"
    label = display_method(name) + ("" if r is None else f" r={r}")
    if mom is None:
        return label
    return label + (f" momentum {mom:g}" if mom else " (plain unload)")


def read_run(run: Any, stage: int) -> dict[str, Any]:
    """The numbers one finished run contributes."""
    d = Path(run.path)
    losses = [(e["step"], e["loss"]) for e in _events(d, "train") if "loss" in e]
    last_step = max((s for s, _ in losses), default=0)
    tail = [v for s, v in losses if s > last_step - stage] or [v for _, v in losses[-1:]]
    res = run.eval_results or {}
    ranks = sorted(_events(d, "update_rank"), key=lambda e: e["step"])
    final_rank = ranks[-1] if ranks else {}
    record = d / "method_record.json"
    stages = json.loads(record.read_text()).get("stages", []) if record.exists() else []
    return {
        "mmlu_acc": _get(res, "mmlu", "accuracy", 100.0), "mmlu_acc_norm": _get(res, "mmlu", "acc_norm", 100.0),
        "gsm8k_bpb": _get(res, "gsm8k", "bits_per_byte", 1.0),
        "loss_first": losses[0][1] if losses else None, "loss_last_stage": sum(tail) / len(tail) if tail else None,
        "loss_drop": (losses[0][1] - sum(tail) / len(tail)) if losses else None,
        "numerical_rank": final_rank.get("mean_numerical_rank"), "stable_rank": final_rank.get("mean_stable_rank"),
        "effective_rank": final_rank.get("mean_effective_rank"), "update_norm": final_rank.get("total_frobenius_norm"),
        "stages": len(stages), "runtime_s": (run.summary or {}).get("runtime_s"),
        "trainable_params": (run.summary or {}).get("trainable_params"),
        "curves": {"loss": losses, "rank": [(e["step"], e["mean_numerical_rank"], e["mean_effective_rank"],
                                             e["mean_stable_rank"], e["total_frobenius_norm"]) for e in ranks]},
    }


def _get(results: dict[str, Any], task: str, key: str, factor: float) -> float | None:
    value = results.get(task, {}).get(key) if isinstance(results.get(task), dict) else None
    return None if value is None else float(value) * factor


# ----------------------------------------------------------------------------------------------------- the table
COLUMNS = (("mmlu_acc", "MMLU acc ↑"), ("mmlu_acc_norm", "MMLU acc_norm ↑"), ("gsm8k_bpb", "GSM8K bpb ↓"),
           ("loss_drop", "loss drop ΔL ↑"), ("numerical_rank", "rank(ΔW)"), ("stable_rank", "stable rank"),
           ("effective_rank", "eff. rank"), ("update_norm", "‖ΔW‖_F"), ("stages", "stages"))


def row_key(run: RunRecord) -> tuple[str, int | None, float | None]:
    """The row of a run folder: the untrained model's (a ``base_model`` summary) or :func:`variant` of its config."""
    if (run.summary or {}).get("method") == BASE:
        return (BASE, None, None)
    return variant(run.config or {})


@cache
def expected_rows(experiment: str) -> tuple[tuple[str, int | None, float | None], ...]:
    """The rows the study expects: the untrained model's (``spectune.training.base_model``, run by make), then
    (method, rank, momentum) of every cell of the experiment's sweep grids, in the order make runs them."""
    keys: list[tuple[str, int | None, float | None]] = [(BASE, None, None)]
    for cfg in grids.cell_configs(experiment, drop=("task", "seed")):
        key = variant({"method": cfg.method})
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def aggregate(runs_root: Path, stage: int, runs: Sequence[RunRecord] | None = None
              ) -> tuple[dict[tuple, dict[str, Any]], list[Any]]:
    """{row key: {column: (mean, std, n)} + curves per seed}, and the runs used (the finished ones of ``runs``, by
    default every run folder under ``runs_root``)."""
    rows: dict[tuple, dict[str, list]] = {}
    used = []
    for run in collect_runs(runs_root) if runs is None else runs:
        if run.status != FINISHED:
            continue
        key = row_key(run)
        if key[0] == BASE:
            vals = {"mmlu_acc": _get(run.eval_results or {}, "mmlu", "accuracy", 100.0),
                    "mmlu_acc_norm": _get(run.eval_results or {}, "mmlu", "acc_norm", 100.0),
                    "gsm8k_bpb": _get(run.eval_results or {}, "gsm8k", "bits_per_byte", 1.0), "curves": None}
        else:
            key = variant(run.config or {})
            vals = read_run(run, stage)
        used.append(run)
        for k, v in vals.items():
            rows.setdefault(key, {}).setdefault(k, []).append(v)
    out = {}
    for key, cols in rows.items():
        out[key] = {k: mean_std([x for x in v if x is not None]) for k, v in cols.items() if k != "curves"}
        out[key]["curves"] = cols.get("curves", [])
    return out, used


def yardstick(key: tuple, rows: dict[tuple, Any]) -> tuple | None:
    """The row a studied row (one with a momentum) is measured against: another method at the same rank without a
    momentum (PeriodicLoRA r=8 → LoRA r=8); None for other rows or when there is none."""
    name, r, mom = key
    if mom is None or r is None:
        return None
    return next((k for k in rows if k[0] != name and k[1] == r and k[2] is None), None)


def ability_ratios(rows: dict[tuple, dict[str, Any]]) -> dict[tuple, dict[str, float | None]]:
    """Learning-ability ratios of every PLoRA row against LoRA at the same rank (module docstring)."""
    base = rows.get((BASE, None, None), {})
    out = {}
    for key, vals in rows.items():
        if (ref := yardstick(key, rows)) is None:
            continue
        lora = rows[ref]

        def ratio(num: float | None, den: float | None) -> float | None:
            # Only a gain of LoRA's can be a yardstick: a ratio of two losses (or over ~0) would read as ability.
            return None if num is None or den is None or den <= 1e-9 else num / den

        def m(row: dict, col: str) -> float | None:
            return row.get(col, (None,))[0]

        out[key] = {
            "loss": ratio(m(vals, "loss_drop"), m(lora, "loss_drop")),
            "mmlu": ratio(_minus(m(vals, "mmlu_acc"), m(base, "mmlu_acc")), _minus(m(lora, "mmlu_acc"),
                                                                                  m(base, "mmlu_acc"))),
            "gsm8k": ratio(_minus(m(base, "gsm8k_bpb"), m(vals, "gsm8k_bpb")), _minus(m(base, "gsm8k_bpb"),
                                                                                     m(lora, "gsm8k_bpb"))),
        }
    return out


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _order(key: tuple) -> tuple:
    """Base model, the rank-less rows (FT), then by rank: each method in registry order, momentum ascending."""
    name, r, mom = key
    order = method_order()
    position = order.index(name) if name in order else len(order)
    return (0 if name == BASE else 1 if r is None else 2, r or 0, position, mom or 0.0)


def _fmt(cell: tuple | None, digits: int = 2) -> str:
    if not cell or cell[0] is None:
        return "–"
    mean, std, n = cell
    if isinstance(mean, float) and mean.is_integer() and digits == 0:
        return f"{mean:.0f}"
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else "")


# Per scale: where the heading puts the study, the caveat under it and the figure caption's word for it.
SCALE_TEXT = {
    "smoke": ("at smoke scale", "**Smoke scale, not a reproduction of the paper** (LLaMA-7B, 3 epochs of instruction "
                                "data).", "smoke"),
    "gpu": ("at GPU scale", "**GPU scale, not a reproduction of the paper** (LLaMA-7B on its instruction data; here "
                            "a 135M model on the MMLU and GSM8K carve-outs, learning rates scaled to the model's width "
                            "and the epochs below: `conf/experiment/plora_gpu.yaml`).", "GPU-scale"),
    "paper": ("at the paper's settings", "**The paper's settings** (`conf/experiment/plora_paper.yaml`); its "
                                         "instruction data is not specified in our sources, so the data is ours "
                                         "(below).", "paper-scale"),
}
NO_PAPER_NUMBERS = (" No paper numbers are shown: we could not read the paper's tables, so none are transcribed "
                    "(issue: fill paper columns only from a source read and cited).")
NOT_RUN, NOT_FINISHED = "not run", "no finished run"


def scale_text(scale: str) -> tuple[str, str, str]:
    """(heading phrase, caveat, caption word) of ``scale`` (:data:`SCALE_TEXT`; a plain fallback for others)."""
    return SCALE_TEXT.get(scale, (f"at {scale} scale", f"**{scale} scale, not a reproduction of the paper**.",
                                  f"{scale}-scale"))


def _subject(cfg: dict[str, Any]) -> tuple[str, str, str]:
    """(model in the heading, model and data in the figure caption, the model bullet) of a trained run's config:
    SmolLM2-135M-Instruct on the MMLU + GSM8K carve-outs (smoke and GPU scale), else the config's names."""
    model_cfg = cfg.get("model") or {}
    model, dtype = model_cfg.get("name"), model_cfg.get("dtype", "?")
    task = (cfg.get("task") or {}).get("name")
    if model in (None, "smollm2"):
        long, short = "SmolLM2-135M-Instruct", "SmolLM2-135M"
        bullet = f"{long} (embedded GGUF, dequantised, {dtype})"
    else:
        long = short = display_model(model)
        bullet = f"{long} ({model_cfg.get('name_or_path', model)}, {dtype})"
    data = "MMLU+GSM8K carve-outs" if task in (None, "mmlu_gsm8k") else f"task {task}"
    return long, f"{short} on {data}", bullet


def render(rows: dict, ratios: dict, runs: list, command: str, stage: int, prov: Provenance, scale: str = "smoke",
           expected: Sequence[tuple] = (), unfinished: Collection[tuple] = (), problems: Sequence[str] = ()
           ) -> tuple[str, str]:
    """Markdown (caption, table, definitions) and CSV of the study; ``prov``: the runs' provenance (:func:`collect`).

    ``scale`` words the heading and the caveat; ``expected`` rows without a finished run read ``not run`` (``no
    finished run`` for those in ``unfinished``); ``problems``: lines on the run folders that did not finish, listed
    under the table."""
    keys = sorted(set(rows) | set(expected), key=_order)
    digits = {"mmlu_acc": 1, "mmlu_acc_norm": 1, "gsm8k_bpb": 3, "loss_drop": 3, "numerical_rank": 1,
              "stable_rank": 2, "effective_rank": 1, "update_norm": 2, "stages": 0}
    header = ["method", *[c[1] for c in COLUMNS], "LA ratio (loss)", "LA ratio (MMLU)", "LA ratio (GSM8K)"]
    md_rows, csv_rows = [], []
    for key in keys:
        if key not in rows:
            missing = NOT_FINISHED if key in unfinished else NOT_RUN
            md_rows.append([row_label(key), *[missing] * len(COLUMNS), "–", "–", "–"])
            csv_rows.append([row_label(key), *[""] * len(COLUMNS), "", "", "", 0])
            continue
        vals = rows[key]
        ra = ratios.get(key, {})
        cells = [_fmt(vals.get(c), digits[c]) for c, _ in COLUMNS]
        rat = [f"{ra[k]:.2f}" if ra.get(k) is not None else "–" for k in ("loss", "mmlu", "gsm8k")]
        md_rows.append([row_label(key), *cells, *rat])
        n = max((v[2] for k, v in vals.items() if k != "curves" and isinstance(v, tuple)), default=0)
        csv_rows.append([row_label(key), *[_num(vals.get(c)) for c, _ in COLUMNS],
                         *[_num((ra.get(k), None, 1)) for k in ("loss", "mmlu", "gsm8k")], n])
    trained = [r for r in runs if (r.summary or {}).get("method") != BASE]
    sizes = "; ".join(f"{display_task(t)}: {' | '.join(v)}" for t, v in prov.carve_out.items()) or "not recorded"
    runtime = prov.runtime_s_sum or 0.0
    cfg = (trained[0].config or {}) if trained else {}
    t = cfg.get("train", {})
    targets = next((r.config["method"]["target_modules"] for r in trained
                    if (r.config or {}).get("method", {}).get("target_modules")), None)
    ranked = [n for n in method_order() if any(k[0] == n and k[1] is not None for k in rows)]
    rankless = [n for n in method_order() if n != BASE and any(k[0] == n and k[1] is None for k in rows)]
    where, caveat, _ = scale_text(scale)
    lrs = ", ".join(f"{'/'.join(map(display_method, names))} {_lrs(trained, ranked=with_rank)}"
                    for names, with_rank in ((ranked, True), (rankless, False)) if names) or "?"
    model, _, model_bullet = _subject(cfg)
    task = cfg.get("task", {}).get("name")
    data = (f"- Data: seeded disjoint carve-outs of the embedded MMLU test split and GSM8K ({sizes}); trained on the "
            "union, each test carve-out scored by gold-answer likelihood." if task in (None, "mmlu_gsm8k") else
            f"- Data: task {task} ({sizes}).")
    caption = [
        f"# PeriodicLoRA study {where}: FT vs LoRA vs PLoRA (plain, momentum) on {model}",
        "",
        caveat + NO_PAPER_NUMBERS,
        "",
        f"- Model: {model_bullet}; "
        f"targets {', '.join(targets or []) or '?'} (full FT tracks the same).",
        data,
        f"- Training: {t.get('epochs')} epochs, batch {t.get('batch_size')}, max_length {t.get('max_length')}, "
        f"AdamW β2 {t.get('adam_beta2')}, {t.get('scheduler')} LR ({lrs}), "
        f"{t.get('precision')}; PLoRA unloads every {stage} optimizer steps and at each epoch end (not after the "
        "final step); a momentum row keeps the share m of the adapter (A and B scaled by √m) and merges (1−m)·sBA.",
        f"- Seeds: {', '.join(map(str, prov.seeds)) or 'none'}; commit: {commit_text(prov)}; hardware: "
        f"{'; '.join(prov.devices) or 'not recorded'}; total runtime {runtime / 60:.1f} min (sum over runs, base "
        "evaluation included).",
        f"- Command: `{command}`.",
        "",
    ]
    notes = [
        "",
        "Columns. MMLU acc / acc_norm: % of test questions whose gold answer text has the highest (length-normalised) "
        "log-likelihood. GSM8K bpb: bits per byte of the gold solution given the question (lower is better; not "
        "exact-match accuracy). ΔL: first logged training loss − mean loss over the last stage. rank(ΔW), stable rank, "
        "eff. rank: means over the adapted matrices of the accumulated update W_final − W_0 (numerical rank at "
        "max(m,n)·eps·σ_1; ‖ΔW‖_F²/‖ΔW‖_2²; exp of the entropy of the normalised singular values); ‖ΔW‖_F over all of "
        "them. LA ratio: PLoRA's gain divided by LoRA's at the same rank (loss drop; MMLU and GSM8K gains over the "
        "untrained model) — our reading of the paper's \"learning ability\" (docs/plora.md).",
    ]
    if any(key not in rows for key in keys):
        notes += ["", f"{NOT_RUN}: a row of the sweep grids without a run folder; {NOT_FINISHED}: its run folders "
                     "failed or are incomplete (listed below)."]
    if problems:
        notes += ["", "## Run folders with problems", "", *(f"- {line}" for line in problems)]
    csv = csv_text(["method", *[c[0] for c in COLUMNS], "la_loss", "la_mmlu", "la_gsm8k", "n_seeds"], csv_rows)
    return "\n".join([*caption, *markdown_table(header, md_rows), *notes]) + "\n", csv


def _lrs(runs: list, ranked: bool) -> str:
    """The learning rates of the runs of methods with (``ranked``) or without a rank."""
    vals = sorted({str((r.config or {}).get("train", {}).get("lr")) for r in runs
                   if has_rank((r.config or {}).get("method", {}).get("name")) == ranked})
    return "|".join(vals) or "?"


def _num(cell: tuple | None) -> str:
    return "" if not cell or cell[0] is None else repr(float(cell[0]))


# ----------------------------------------------------------------------------------------------------- the figure
def plot(rows: dict, path: Path, caption: str) -> dict[str, Any]:
    """Accumulated-update rank, ‖ΔW‖_F and training loss against the step, one line per method; returns the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data: dict[str, Any] = {}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for key in sorted(rows, key=_order):
        curves = rows[key].get("curves") or []
        if not curves or key[0] == BASE:
            continue
        c = curves[0]  # first seed
        data[row_label(key)] = c
        # full fine-tuning black, the yardsticks (a rank, no momentum) dashed, the studied rows solid
        style = "k-" if key[1] is None else "--" if key[2] is None else "-"
        if c["rank"]:
            steps = [x[0] for x in c["rank"]]
            axes[0].plot(steps, [x[2] for x in c["rank"]], style, marker="o", ms=3, label=row_label(key))
            axes[1].plot(steps, [x[4] for x in c["rank"]], style, marker="o", ms=3, label=row_label(key))
        if c["loss"]:
            axes[2].plot([x[0] for x in c["loss"]], [x[1] for x in c["loss"]], style, lw=1, label=row_label(key))
    axes[0].set(title="effective rank of W_t − W_0 (mean over matrices)", xlabel="optimizer step", yscale="log")
    axes[1].set(title="‖W_t − W_0‖_F (all adapted matrices)", xlabel="optimizer step")
    axes[2].set(title="training loss", xlabel="optimizer step")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.text(0.01, 0.005, caption, fontsize=7, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)
    return data


def stage_of(experiment: str) -> int:
    """The stage length (optimizer steps) the experiment's grids give PeriodicLoRA: their ``method.unload_every``."""
    values = {v for grid in grids.load_grids(experiment) for v in grid.axis("method.unload_every")}
    if len(values) != 1:
        raise ValueError(f"conf/sweep/{experiment} sets method.unload_every to {sorted(values) or 'nothing'}; the "
                         "study needs one stage length (pass --stage).")
    return int(values.pop())


def report(runs_root: Path, out: Path, command: str, stage: int, scale: str = "smoke",
           assume_commit: str | None = None, allow_mixed_commits: bool = False,
           expected: Sequence[tuple] = ()) -> dict[str, Path]:
    """Write the table (md, csv) and the rank figure (png, json) of ``scale``; returns their paths. ``expected``: the
    rows to show even without a finished run (:func:`expected_rows`). Raises
    :class:`~experiments.report.provenance.MixedCommitsError` for runs of mixed commits unless allowed."""
    collected = collect_runs(runs_root)
    rows, runs = aggregate(runs_root, stage, collected)
    if not runs:
        raise FileNotFoundError(f"No finished run under {runs_root}: run `make reproduce-plora` first.")
    prov = collect(runs, runs_root=runs_root, command=command, what=f"the PeriodicLoRA study (plora_{scale})",
                   row_of=lambda run: row_label(row_key(run)),
                   allow_mixed_commits=allow_mixed_commits, assume_commit=assume_commit)
    ratios = ability_ratios(rows)
    unfinished_runs = [r for r in collected if r.status != FINISHED]
    unfinished = {row_key(r) for r in unfinished_runs if r.config or r.summary}
    md, csv = render(rows, ratios, runs, command, stage, prov, scale, expected, unfinished,
                     problem_report(unfinished_runs, runs_root))
    paths = {"md": out / "tables" / f"plora_{scale}.md", "csv": out / "tables" / f"plora_{scale}.csv",
             "png": out / "figures" / f"plora_rank_{scale}.png", "json": out / "figures" / f"plora_rank_{scale}.json"}
    write_text_atomic(paths["md"], md)
    write_text_atomic(paths["csv"], csv)
    trained = next((r.config or {} for r in runs if row_key(r)[0] != BASE), {})
    caption = (f"PeriodicLoRA {scale_text(scale)[2]} study, {_subject(trained)[1]}, first seed; commit "
               f"{commit_text(prov, short=True)}; {'; '.join(prov.devices) or 'hardware not recorded'}; `{command}`")
    data = plot(rows, paths["png"], caption)
    write_json_atomic(paths["json"], {"caption": caption, "command": command, "commits": prov.commit_texts,
                                      "run_commits": {c.run: c.text() for c in prov.commits},
                                      "devices": prov.devices, "curves": data,
                                      "ratios": {row_label(k): v for k, v in ratios.items()}})
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="table and rank figure from the run folders")
    r.add_argument("--runs", default="runs/plora")
    r.add_argument("--out", default="results")
    r.add_argument("--stage", type=int, default=None,
                   help="PLoRA stage length in steps (for the last-stage loss); default: the experiment's grids")
    r.add_argument("--scale", default="smoke",
                   help="names the outputs (plora_<scale>.md, plora_rank_<scale>.png) and words the caption")
    r.add_argument("--experiment", default=None,
                   help="the experiment whose grids give the expected rows and the stage length (default: "
                        "plora_<scale>)")
    r.add_argument("--assume-commit", default=None,
                   help="commit to show for runs that recorded none (e.g. from a remote machine's log)")
    add_provenance_args(r, started=False)
    args = p.parse_args(argv)
    command = command_of(args, "experiments.plora_study", list(sys.argv[1:] if argv is None else argv))
    try:
        experiment = args.experiment or f"plora_{args.scale}"
        stage = args.stage if args.stage is not None else stage_of(experiment)
        paths = report(Path(args.runs), Path(args.out), command, stage, args.scale, args.assume_commit,
                       args.allow_mixed_commits, expected_rows(experiment))
    except (FileNotFoundError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    except MixedCommitsError as err:
        return refuse(err)
    print(Path(paths["md"]).read_text())
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
