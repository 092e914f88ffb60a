"""experiments.runs: walking run folders, statuses, robustness to missing and malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.runs import (
    FAILED,
    FINISHED,
    INCOMPLETE,
    MALFORMED,
    canonical_method,
    canonical_task,
    collect_runs,
    problem_report,
    read_run,
)


def test_collect_runs_lists_every_status(fake_runs: Path, scenario: dict) -> None:
    runs = collect_runs(fake_runs)
    expected = sum(len(seeds) for seeds in scenario.values())
    assert len(runs) == expected
    by_status = {s: [r for r in runs if r.status == s] for s in (FINISHED, FAILED, INCOMPLETE, MALFORMED)}
    assert len(by_status[FAILED]) == 2
    assert len(by_status[INCOMPLETE]) == 1
    assert len(by_status[MALFORMED]) == 0
    assert len(by_status[FINISHED]) == expected - 3
    incomplete = by_status[INCOMPLETE][0]
    assert (incomplete.model, incomplete.method, incomplete.task, incomplete.seed, incomplete.rank) == (
        "minilm", "lora", "rte", 2, 8)
    assert [str(r.path) for r in runs] == sorted(str(r.path) for r in runs)


def test_finished_run_fields(fake_runs: Path, fake_commit: str) -> None:
    run = read_run(fake_runs / "minilm" / "full" / "sst2" / "seed1")
    assert run.status == FINISHED
    assert run.problems == []
    assert (run.model, run.method, run.task, run.scale, run.seed, run.rank) == ("minilm", "full", "sst2", "smoke", 1,
                                                                                 None)
    assert run.commit == fake_commit
    assert run.runtime_s == 12.5
    assert run.metric("accuracy") == 0.8671875
    assert run.metric("f1") is None
    assert run.config["train"]["epochs"] == 3
    assert len(run.data_indices["train_indices"]["sst2"]) == 64


def test_failed_run_keeps_error(fake_runs: Path) -> None:
    run = read_run(fake_runs / "minilm" / "full" / "mrpc" / "seed2")
    assert run.status == FAILED
    assert "out of memory" in run.error
    assert run.commit is None and run.rank is None  # the failure summary has neither
    assert run.eval_results is None
    assert run.problems == []  # eval_results.json is not expected of a failed run
    assert any("failed" in line and "out of memory" in line for line in problem_report([run]))


def test_malformed_files_are_reported_not_fatal(tmp_path: Path, run_writer) -> None:
    bad_summary = run_writer(tmp_path, seed=0, metrics={"accuracy": 0.5})
    (bad_summary / "summary.json").write_text("{not json")
    bad_yaml = run_writer(tmp_path, seed=1, metrics={"accuracy": 0.5})
    (bad_yaml / "config.yaml").write_text("model: [unclosed\n")
    bad_status = run_writer(tmp_path, seed=2, metrics={"accuracy": 0.5})
    summary = json.loads((bad_status / "summary.json").read_text())
    (bad_status / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    no_eval = run_writer(tmp_path, seed=3, metrics={"accuracy": 0.5})
    (no_eval / "eval_results.json").unlink()
    list_json = run_writer(tmp_path, seed=4, metrics={"accuracy": 0.5})
    (list_json / "environment.json").write_text("[1, 2]")

    runs = {r.seed: r for r in collect_runs(tmp_path)}
    assert set(runs) == {0, 1, 2, 3, 4}
    assert runs[0].status == MALFORMED and any("summary.json: unreadable" in p for p in runs[0].problems)
    assert runs[0].method == "lora" and runs[0].task == "sst2"  # identity still known from config.yaml
    assert runs[1].status == FINISHED and any("config.yaml: unreadable" in p for p in runs[1].problems)
    assert runs[2].status == MALFORMED and any("'running'" in p for p in runs[2].problems)
    assert runs[3].status == FINISHED and "eval_results.json: missing" in runs[3].problems
    assert runs[3].metric("accuracy") == 0.5  # falls back to summary.json's metrics
    assert runs[4].environment is None and any("environment.json: not a mapping" in p for p in runs[4].problems)
    assert len(problem_report(list(runs.values()), tmp_path)) == 5


def test_identity_from_path_when_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "minilm" / "lora_dash" / "glue_mrpc" / "seed7"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("")
    (run,) = collect_runs(tmp_path)
    assert run.status == INCOMPLETE
    assert (run.model, run.method, run.task, run.seed) == ("minilm", "lora_dash", "mrpc", 7)
    assert any("taken from the folder path" in p for p in run.problems)


def test_rank_from_config_and_method_label(tmp_path: Path, run_writer) -> None:
    failed = read_run(run_writer(tmp_path, method="lora", rank=2, status="failed"))
    assert (failed.method, failed.rank, failed.scale) == ("lora", 2, "smoke")  # summary lacks rank: config has it
    folder = tmp_path / "runs" / "minilm" / "lora-r4" / "rte" / "seed3"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("")
    run = read_run(folder)
    assert (run.model, run.method, run.rank, run.task, run.seed) == ("minilm", "lora", 4, "rte", 3)


def test_walk_skips_hidden_and_nested_folders(fake_runs: Path) -> None:
    hidden = fake_runs / ".hydra"
    hidden.mkdir()
    (hidden / "config.yaml").write_text("a: 1\n")
    ckpt = fake_runs / "minilm" / "lora-r8" / "sst2" / "seed0" / "checkpoints" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    (ckpt / "config.yaml").write_text("a: 1\n")
    paths = [r.path for r in collect_runs(fake_runs)]
    assert hidden not in paths and ckpt not in paths


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        collect_runs(tmp_path / "nope")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("glue/sst2", "sst2"), ("SST-2", "sst2"), ("glue_sst2", "sst2"), ("sts-b", "stsb"), ("mrpc", "mrpc"),
     ("commonsense/arc_easy", "arc_e"), ("ARC-Challenge", "arc_c"), ("openbookqa", "obqa"),
     ("custom_task", "custom_task"), (None, None)],
)
def test_canonical_task(name: str | None, expected: str | None) -> None:
    assert canonical_task(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("full", "full"), ("Fully FT", "full"), ("full_ft", "full"), ("LoRA", "lora"), ("lora-dash", "lora_dash"),
     ("LoRA-Dash", "lora_dash"), ("PeriodicLoRA", "plora"), ("svf", "svf"), ("", None)],
)
def test_canonical_method(name: str, expected: str | None) -> None:
    assert canonical_method(name) == expected


def test_metric_lookup_variants(tmp_path: Path, run_writer) -> None:
    folder = run_writer(tmp_path, task="mrpc", metrics={"accuracy": 0.7})
    (folder / "eval_results.json").write_text(json.dumps(
        {"glue/mrpc": {"eval_accuracy": 0.71, "eval_f1": 0.8, "n": 10}, "glue/rte": {"accuracy": 0.55, "n": 5}}))
    run = read_run(folder)
    assert run.metric("accuracy") == 0.71
    assert run.metric("f1") == 0.8
    assert run.metric("accuracy", "rte") == 0.55
    assert run.metric("accuracy", "sst2") is None
    (folder / "eval_results.json").write_text(json.dumps({"mrpc": {"accuracy": float("nan"), "n": 10}}))
    assert read_run(folder).metric("accuracy") == 0.7  # NaN is no value; summary.json's metrics are used
