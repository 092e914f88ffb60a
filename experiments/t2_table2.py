"""Transformer²'s Table 2: self-adaptation on the unseen tasks MATH / HumanEval / ARC-Challenge, ours beside the paper.

Usage (from the repository root; ``make reproduce-t2-table2`` runs Table 1's runs, the rows below and then this)::

    python -m experiments.t2_table2 --experiment t2_table2_smoke --runs runs/t2_table2 --out results/tables \\
        --command "make reproduce-t2-table2 SCALE=smoke SEEDS=1"

Rows:

- base: the untuned model (``python -m spectune.training.score_task``: ``<runs>/<model>/base/<task>/seed<k>``);
- LoRA: Table 1's LoRA of the task's domain (GSM8K → MATH, MBPP → HumanEval, ARC-Easy → ARC-Challenge) scored on
  the unseen task (``score_task --run``: ``<runs>/<model>/lora-r16-from-<task>/<task>/seed<k>``);
- ``t2_prompt`` / ``t2_cls_expert`` / ``t2_few_shot``: Transformer²'s strategies over Table 1's SVF experts, one
  ``python -m spectune.adapt`` result JSON per strategy, task and seed under ``<runs>/adapt/<model>/<task>/<strategy>/``
  (read by :func:`adapt_records`; several results for one seed: the newest is used and the others are noted). A
  strategy without a result reads ``not run``. ``t2_cls_expert``'s first pass runs the classification expert, the
  one cell this table trains (``conf/sweep/<experiment>/cls_expert.yaml``: SVF, task ``t2_cls``, REINFORCE on the
  experts' train / validation items; ``<runs>/<model>/svf-official-mlp/t2_cls/seed<k>``); the caption names it,
  its training settings and its best validation accuracy (:func:`classifier_lines`).

Beside the scores: the first-pass time of each strategy as the paper's Table 3 states it (first pass in s and as a
share of the second pass; also of the whole inference), with the paper's Table 3 numbers for the prompt strategy.
Every row of a task must have been scored on the same test items (refused otherwise, exit status 2). Runs and
results of several commits or of a dirty tree are refused (exit status 3) unless ``--allow-mixed-commits``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments import grids
from experiments.report.cli import command_of, refuse, wall_s
from experiments.report.provenance import MixedCommitsError
from experiments.report.render import atomic_write_text, csv_text, markdown_table
from experiments.report.table import Table, TableSpec, build_table
from experiments.report.vocabulary import BASE
from experiments.runs import FINISHED, MALFORMED, RunRecord, collect_runs
from experiments.t2_table1 import (
    PAPER_DIR,
    PAPER_SOURCE,
    SCALE_TEXT,
    caveats_for,
    columns,
    ours_label,
    paper_rows,
    parser_for,
    settings_bullets,
    table_markdown,
    used_runs,
    write_outputs,
)

PAPER_CSV = PAPER_DIR / "t2_table2.csv"
PAPER_TIMING_CSV = PAPER_DIR / "t2_table3_timing.csv"
NAME = "t2_table2"
EXPERIMENT = "t2_table2_smoke"
TASKS = {"t2_math": ("math", "MATH"), "t2_humaneval": ("humaneval", "HumanEval"),
         "t2_arc_challenge": ("arc_challenge", "ARC-Challenge")}
STRATEGIES = ("prompt", "cls_expert", "few_shot")
STRATEGY_METHOD = {s: f"t2_{s}" for s in STRATEGIES}
STRATEGY_LABEL = {"prompt": "T² (Prompt)", "cls_expert": "T² (Cls-expert)", "few_shot": "T² (Few-shot)"}
LORA_RANK = 16

CAVEATS = (
    "Transformer²'s Table 2: adaptation to tasks no expert was trained on. Rows `t2_prompt`, `t2_cls_expert`, "
    "`t2_few_shot` are the paper's T² (Prompt), T² (Cls-expert), T² (Few-shot): two-pass inference over Table 1's "
    "three SVF experts (`python -m spectune.adapt`, docs/adapt.md); LoRA is Table 1's LoRA of the task's domain "
    "(GSM8K → MATH, MBPP → HumanEval, ARC-Easy → ARC-Challenge) scored on the unseen task (our reading: the paper "
    "does not say here which LoRA it transfers).",
    "**Smoke — not a reproduction**: SmolLM2-135M-Instruct instead of Llama3-8B-Instruct / Mistral-7B-Instruct-v0.3; "
    "experts trained for a few REINFORCE iterations on a handful of items; a handful of test items per task; "
    "completions cut at a few dozen tokens; few-shot CEM with a tiny population and few iterations (settings in the "
    "result files). Exact match sits at or near 0 for every row: read the gold bits per byte.",
    "Deviations of the two-pass inference from the official code (other → base weights, classifier data from the "
    "experts' splits only, few-shot shots from the train split and never scored, mixtures of mapped z, first pass "
    "without a pre-fill) are listed in docs/adapt.md and in every result file.",
)
GPU_CAVEAT = (
    "**GPU scale, not a reproduction**: the full SmolLM2-135M-Instruct and its GPU-scale experts (Table 1 at GPU "
    "scale: a few REINFORCE iterations on carve-outs of the embedded splits) instead of Llama3-8B-Instruct / "
    "Mistral-7B-Instruct-v0.3 and the paper's experts; a seeded sample of each task's test items, the same for every "
    "row; answers and the first pass cut at 64 tokens instead of 512 (MATH 1024); few-shot CEM with a small "
    "population and few iterations instead of 32 × 50 (settings in the result files; "
    "`conf/experiment/t2_table2_gpu.yaml` says why). Exact match of a 135M model is low on these tasks: read the "
    "gold bits per byte beside it."
)


# --------------------------------------------------------------------------------------------- adapt result files
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def adapt_record(path: Path, scale: str | None) -> RunRecord:
    """One ``spectune.adapt`` result JSON as a :class:`RunRecord` of method ``t2_<strategy>`` (status malformed when
    it cannot be read); its environment, config, data indices and runtime come from the result's provenance."""
    data = _read_json(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("score"), Mapping):
        return RunRecord(path=path, status=MALFORMED, problems=["unreadable spectune.adapt result"])
    prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    task = str(data.get("task"))
    score = data["score"]
    timing = data.get("timing") if isinstance(data.get("timing"), Mapping) else {}
    entry = {k: score.get(k) for k in ("exact_match", "bits_per_byte", "nll_per_token", "n") if k in score}
    dev = dict(prov.get("device") or {})
    environment = {"git": prov.get("commit"), "device": {k: dev.get(k) for k in ("type", "name", "count")},
                   "packages": prov.get("packages"), "python": prov.get("python")}
    data_prov = prov.get("data") if isinstance(prov.get("data"), Mapping) else {}
    indices = {"task": task, "source": data_prov.get("source"), "carve_out": data_prov.get("source") == "embedded",
               "train_indices": {task: list(_indices(data_prov.get("train_indices"), task))},
               "test_indices": {task: list(_indices(data_prov.get("test_indices"), task))},
               "origin": data_prov.get("origin")}
    runtime = sum(float(v) for k, v in timing.items() if k.endswith("_seconds") and isinstance(v, (int, float)))
    runtime += float(prov.get("load_seconds") or 0.0)
    commit = (prov.get("commit") or {}).get("commit") if isinstance(prov.get("commit"), Mapping) else None
    model = (data.get("model") or {}).get("name") if isinstance(data.get("model"), Mapping) else None
    return RunRecord(path=path, status=FINISHED, model=model, method=STRATEGY_METHOD.get(str(data.get("strategy")),
                     f"t2_{data.get('strategy')}"), task=task, scale=scale, seed=prov.get("seed"), rank=None,
                     commit=commit, runtime_s=runtime, summary={"status": FINISHED, "adapt": True},
                     config=prov.get("config"), eval_results={task: entry}, data_indices=indices,
                     environment=environment)


def _indices(node: Any, task: str) -> list[Any]:
    """An index list from ``[...]`` or ``{task: [...]}``."""
    if isinstance(node, Mapping):
        node = node.get(task, next(iter(node.values()), []))
    return list(node) if isinstance(node, list) else []


def adapt_records(root: Path, scale: str | None) -> tuple[list[RunRecord], list[str]]:
    """The newest result per (model, task, strategy, seed) under ``root`` (``<runs>/adapt``), and notes naming the
    results left out."""
    found: dict[tuple[Any, ...], list[RunRecord]] = {}
    for path in sorted(root.rglob("result-*.json")) if root.is_dir() else []:
        rec = adapt_record(path, scale)
        found.setdefault((rec.model, rec.task, rec.method, rec.seed), []).append(rec)
    out: list[RunRecord] = []
    notes: list[str] = []
    for key, recs in found.items():
        recs.sort(key=lambda r: (r.status == FINISHED, r.path.name))  # names carry the UTC time
        out.append(recs[-1])
        if len(recs) > 1:
            notes.append(f"{len(recs)} results for {key[2]} on {key[1]} seed {key[3]}; used {recs[-1].path.name}")
    return out, notes


# ------------------------------------------------------------------------------------------------------ checks
class TestItemsDiffer(ValueError):
    """Rows of one task scored on different test items."""


def check_same_test_items(runs: Sequence[RunRecord]) -> None:
    """Every finished row of a (model, task, seed) must list the same test indices (raises :class:`TestItemsDiffer`
    naming them). Few-shot drops test items equal to a shot; it still lists the carve-out it drew."""
    groups: dict[tuple[Any, ...], dict[tuple[Any, ...], list[str]]] = {}
    for run in runs:
        if run.status != FINISHED or not isinstance(run.data_indices, Mapping):
            continue
        test = run.data_indices.get("test_indices")
        items = tuple(_indices(test, run.task or ""))
        groups.setdefault((run.model, run.task, run.seed), {}).setdefault(items, []).append(str(run.path))
    bad = {k: v for k, v in groups.items() if len(v) > 1}
    if bad:
        lines = [f"{k[1]} seed {k[2]}: " + " vs ".join(f"{len(items)} items ({', '.join(paths)})"
                                                         for items, paths in v.items()) for k, v in bad.items()]
        raise TestItemsDiffer("rows of one task were scored on different test items (the adapt settings must use the "
                              "experiment's task.n_test and seed):\n  " + "\n  ".join(lines))


# ------------------------------------------------------------------------------------------------------ timing
def paper_timing(csv_path: str | Path = PAPER_TIMING_CSV) -> dict[str, dict[str, str]]:
    """The paper's Table 3 rows by task key (``math`` …): first pass s, its % of the second pass, second pass s."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return {row["task"]: row for row in csv.DictReader(fh)}


def timing_rows(adapt: Sequence[RunRecord], paper: Mapping[str, Mapping[str, str]]
                ) -> tuple[list[str], list[list[Any]]]:
    """Per (task, strategy, seed): first and second pass seconds, first / second (the paper's Table 3 percentage),
    first / (first + second), CEM search seconds; the paper's prompt row of the task beside ours."""
    header = ["task", "row", "seed", "first pass s", "second pass s", "first / second %", "first / total %",
              "CEM search s", "n test"]
    body: list[list[Any]] = []
    for rec in sorted(adapt, key=lambda r: (list(TASKS).index(r.task) if r.task in TASKS else 9, r.method or "",
                                            r.seed or 0)):
        data = _read_json(rec.path) or {}
        t = data.get("timing") or {}
        first, second = t.get("first_pass_seconds"), t.get("second_pass_seconds")
        body.append([TASKS.get(rec.task or "", (rec.task, rec.task))[1], f"ours {rec.method}", rec.seed,
                     _f(first), _f(second), _pct(t.get("first_pass_vs_second")),
                     _pct(t.get("first_pass_share_of_total")), _f(t.get("cem_search_seconds")),
                     (data.get("score") or {}).get("n", "")])
    for key, (_, label) in ((v[0], (k, v[1])) for k, v in TASKS.items()):
        row = paper.get(key)
        if row:
            first, second = float(row["first_pass_s"]), float(row["second_pass_s"])
            body.append([label, "paper (Llama3-8B-Instruct) t2_prompt", "", row["first_pass_s"], row["second_pass_s"],
                         row["first_pass_vs_second_pct"], f"{100 * first / (first + second):.1f}", "", "whole set"])
    return header, body


def _f(x: Any) -> str:
    return "" if not isinstance(x, (int, float)) else f"{x:.2f}"


def _pct(x: Any) -> str:
    return "" if not isinstance(x, (int, float)) else f"{100 * x:.1f}"


def cem_lines(adapt: Sequence[RunRecord]) -> list[str]:
    """The few-shot mixture weights found by CEM, per task and seed (the result files' ``few_shot.alpha``)."""
    lines = []
    for rec in adapt:
        if rec.method != STRATEGY_METHOD["few_shot"]:
            continue
        data = _read_json(rec.path) or {}
        few = data.get("few_shot") if isinstance(data.get("few_shot"), Mapping) else {}
        experts = [e.get("domain") or e.get("task") or e.get("source") for e in data.get("experts", [])
                   if isinstance(e, Mapping)]
        if few.get("alpha") is not None:
            acc = few.get("shot_accuracy")
            lines.append(f"- {rec.task} seed {rec.seed}: α = {_round(few['alpha'])} over experts {experts} (shot "
                         f"accuracy {acc if acc is not None else '?'}, {few.get('n_shots', '?')} shots)")
    return lines


def routing_lines(adapt: Sequence[RunRecord]) -> list[str]:
    """What the dispatch strategies' first pass chose, per task and seed (the result files' ``routing.counts``)."""
    lines = []
    for rec in adapt:
        data = _read_json(rec.path) or {}
        routing = data.get("routing") if isinstance(data.get("routing"), Mapping) else None
        if routing and isinstance(routing.get("counts"), Mapping):
            counts = ", ".join(f"{d} {n}" for d, n in routing["counts"].items())
            lines.append(f"- {rec.method} on {rec.task} seed {rec.seed}: {counts} (\"other\" and domains without an "
                         "expert answer with the base weights)")
    return lines


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, list):
        return [_round(v) for v in x]
    return x


def classifier_lines(runs: Sequence[RunRecord], adapt: Sequence[RunRecord]) -> list[str]:
    """Caption bullets on the classification experts the cls_expert results used (their ``provenance.cls_expert``):
    run folder, status, domains, REINFORCE settings and best validation exact match (``summary.json``)."""
    used = {}
    for rec in adapt:
        if rec.method == STRATEGY_METHOD["cls_expert"]:
            prov = (_read_json(rec.path) or {}).get("provenance") or {}
            if prov.get("cls_expert"):
                used[str(prov["cls_expert"])] = prov.get("cls_expert_domains")
    by_path = {r.path.resolve(): r for r in runs if r.task == "t2_cls"}
    lines = []
    for given, domains in sorted(used.items()):
        run = by_path.get(Path(given).resolve())
        if run is None:
            lines.append(f"- `{given}`: not among the run folders read (domains {domains}).")
            continue
        cfg, summary = run.config or {}, run.summary or {}
        rl = summary.get("rl") or {}
        settings = ", ".join(f"{k}={_get_key(cfg, k)}" for k in ("train.lr", "train.rl.iterations",
                                                                 "train.rl.batch_prompts", "task.n_train",
                                                                 "task.n_valid") if _get_key(cfg, k) is not None)
        lines.append(f"- `{given}` ({run.status}, commit {str(run.commit or '?')[:7]}): SVF trained by REINFORCE on "
                     f"the experts' train items (domains {_get_key(cfg, 'task.domains') or domains}; {settings}); "
                     f"best validation exact match {rl.get('best_valid_exact_match')} on {rl.get('n_valid')} items "
                     f"(iteration {rl.get('best_iteration')}).")
    return lines


def _get_key(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(cfg, Mapping):
            return None
        cfg = cfg.get(part)
    return cfg


# ------------------------------------------------------------------------------------------------------ table
def expected_rows(experiment: str) -> tuple[tuple[str | None, str, int | None], ...]:
    """For each model of the experiment: base, LoRA r16, and the three strategies."""
    with grids.hydra_compose():
        cfg = grids.compose([f"experiment={experiment}"], hydra_config=True)
    models = cfg.hydra.sweeper.params.get("model")
    names = str(models).split(",") if models else [grids.default_model(experiment)]
    return tuple(row for m in names for row in ((m, BASE, None), (m, "lora", LORA_RANK),
                                                 *((m, STRATEGY_METHOD[s], None) for s in STRATEGIES)))


def build_spec(runs_root: str, command: str, experiment: str = EXPERIMENT, paper_csv: str | Path = PAPER_CSV,
               wall: float | None = None, allow_mixed_commits: bool = False) -> TableSpec:
    scale = grids.scale_of(experiment)
    expected = expected_rows(experiment)
    return TableSpec(
        name=f"{NAME}_{scale}",
        title=f"Transformer² Table 2 (self-adaptation on unseen tasks): base vs LoRA vs T² prompt / cls-expert / "
              f"few-shot on MATH / HumanEval / ARC-Challenge — ours ({SCALE_TEXT.get(scale, scale)}) beside the paper",
        columns=columns(TASKS),
        command=command,
        runs_root=runs_root,
        methods=list(dict.fromkeys(m for _, m, _ in expected)),
        expected_rows=expected,
        expected_scale=scale,
        paper_rows=paper_rows(paper_csv, TASKS),
        paper_source=PAPER_SOURCE.format(csv=Path(paper_csv).name) + " Table 3 (first-pass time): "
                     "`results/paper/t2_table3_timing.csv`.",
        caveats=caveats_for(scale, CAVEATS, GPU_CAVEAT),
        ours_label=ours_label,
        avg_label="Avg EM (3 tasks)",
        wall_s=wall,
        allow_mixed_commits=allow_mixed_commits,
    )


ROW_ORDER = (BASE, "lora", *STRATEGY_METHOD.values())


def make_table(runs: Sequence[RunRecord], adapt: Sequence[RunRecord], runs_root: str, command: str,
               experiment: str = EXPERIMENT, paper_csv: str | Path = PAPER_CSV, wall: float | None = None,
               allow_mixed_commits: bool = False, notes: Sequence[str] = ()) -> tuple[Table, list[RunRecord]]:
    """The table (rows ordered base, LoRA, prompt, cls_expert, few_shot; ours before the paper's) and the runs and
    results it placed. Raises MixedCommitsError or TestItemsDiffer."""
    spec = build_spec(runs_root, command, experiment, paper_csv, wall, allow_mixed_commits)
    every = [*runs, *adapt]
    table = build_table(every, spec)
    placed = used_runs(table, every)
    check_same_test_items(placed)
    table.provenance.notes.extend(notes)
    # Nothing here trains: the generic "Training settings" bullet would quote the scoring configs' unused train keys.
    table.provenance.settings_by_row.clear()
    bullets = settings_bullets([r for r in placed if r.method in (BASE, "lora")])
    bullets.insert(0, "**Trained here**: only the classification expert of the cls_expert row (SVF, task `t2_cls`, "
                      "REINFORCE on the experts' train / validation items; conf/sweep/<experiment>/cls_expert.yaml). "
                      "LoRA and the SVF experts are Table 1's runs (`results/tables/t2_table1_<scale>.md` lists their "
                      "training settings); LoRA's run folders here name the run they score (`summary.json`: "
                      "`source_run`, `trained_on`).")
    strategies = sorted({r.method for r in placed if r.method in STRATEGY_METHOD.values()})
    if strategies:
        cfg = next(r.config for r in placed if r.method in STRATEGY_METHOD.values())
        few = (cfg or {}).get("few_shot") or {}
        bullets.append(f"**Adaptation** (`python -m spectune.adapt`, from the result files): strategies run "
                       f"{', '.join(strategies)}; answer budget eval.max_new_tokens="
                       f"{((cfg or {}).get('eval') or {}).get('max_new_tokens')}; first-pass budget "
                       f"classify.max_new_tokens={((cfg or {}).get('classify') or {}).get('max_new_tokens')} "
                       "(None: the task's official budget, 512 new tokens, MATH 1024, as the official first pass "
                       f"shares the task's sampling parameters); few-shot: shots={few.get('shots')}, "
                       f"CEM population={few.get('population')}, iterations={few.get('iterations')}, "
                       f"per_matrix={few.get('per_matrix')}, tie_break={few.get('tie_break')} (paper script: 10 "
                       "shots, population 32, 50 iterations).")
    missing = [s for s in STRATEGIES if STRATEGY_METHOD[s] not in strategies]
    if missing:
        bullets.append(f"**Not run**: {', '.join(missing)} (no result file; `make t2-table2-runs` writes them, "
                       "cls_expert after training its classification expert): left empty rather than faked.")
    spec.extra_caption = tuple(bullets)

    def order(row: Any) -> tuple[Any, ...]:
        m = ROW_ORDER.index(row.method) if row.method in ROW_ORDER else len(ROW_ORDER)
        return (row.source != "ours", row.model or "", row.label, m)

    table.rows.sort(key=order)
    return table, placed


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 2 when the runs folder does not exist or test items differ, 3 on mixed commits."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    p = parser_for(NAME, __doc__, EXPERIMENT, PAPER_CSV)
    p.add_argument("--paper-timing", default=str(PAPER_TIMING_CSV), help="the paper's Table 3 CSV")
    args = p.parse_args(args_list)
    command = command_of(args, f"experiments.{NAME}", args_list)
    root = Path(args.runs)
    if not root.is_dir():
        print(f"error: no run folders at {root} (run make t2-table2-runs first)", file=sys.stderr)
        return 2
    scale = grids.scale_of(args.experiment)
    adapt, notes = adapt_records(root / "adapt", scale)
    try:
        runs = collect_runs(root)
        table, placed = make_table(runs, adapt, str(root), command, args.experiment, args.paper,
                                   wall_s(args), args.allow_mixed_commits, notes)
    except MixedCommitsError as err:
        return refuse(err)
    except TestItemsDiffer as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    used_adapt = [r for r in placed if r.method in STRATEGY_METHOD.values()]
    header, body = timing_rows(used_adapt, paper_timing(args.paper_timing))
    timing = ["First pass = classification generation (prompt, cls_expert) or the CEM search (few_shot); second "
              "pass = answer generation with the chosen z' (expert switches included); scoring and the likelihood "
              "pass are timed apart and excluded. The paper's Table 3 gives first / second for the prompt strategy "
              "on the whole problem set (Llama3-8B-Instruct, GPU, 512 tokens); ours are "
              + ("CPU seconds on a few items." if scale == "smoke" else "seconds on the caption's hardware, on our "
                 "test items (at GPU scale several runs shared each GPU)."),
              "", *markdown_table(header, body)]
    sections = [("First-pass time (the paper's Table 3)", timing)]
    if routes := routing_lines(used_adapt):
        sections.append(("First-pass classification (prompt / cls_expert)", routes))
    if classifiers := classifier_lines(runs, used_adapt):
        sections.append(("Classification expert (cls_expert's first pass)", classifiers))
    if cem := cem_lines(used_adapt):
        sections.append(("Few-shot mixture weights (CEM)", cem))
    notes_by_run = {str(r.path): "adapt result" for r in used_adapt}
    paths = write_outputs(table, table_markdown(table, placed, sections, notes_by_run), args.out)
    timing_csv = atomic_write_text(Path(args.out) / f"{table.spec.name}_timing.csv", csv_text(header, body))
    for note in table.provenance.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {paths['md']}, {paths['csv']} and {timing_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
