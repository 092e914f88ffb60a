"""The run-folder contract end to end through the real CLI: secrets never reach a file or the console, sweep cells
that differ only in an unlisted key each get their own folder, a resume or skip with changed settings is refused by
name, and a refusal is one message with exit status 2 (no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from spectune.training.run_folder import RunFolder, config_diff
from tests.training.helpers import run_train, summary

TINY = ["model=minilm", "task=glue/rte", "task.n_train=16", "task.n_test=8", "train.batch_size=8", "train.max_steps=2",
        "train.save_steps=1", "train.logging_steps=1", "export_merged=false", "method=lora", "method.r=2",
        "train.num_threads=1"]
SECRET = "PLANTED-s3cr3t-VALUE-917"
TOKEN = "hf_PLANTEDtokenVALUE42"


def _all_text(root: Path) -> str:
    out = []
    for p in root.rglob("*"):
        if p.is_file():
            out.append(p.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(out)


@pytest.mark.slow
def test_secrets_reach_no_file_and_no_console(tmp_path: Path) -> None:
    planted = [f"+logger.api_key={SECRET}", f"+hub_token={TOKEN}"]
    ok = run_train([*TINY, *planted], tmp_path)
    failed = run_train([*TINY, *planted, "method.r=100000", "run_tag=-bad"], tmp_path, check=False)
    assert failed.returncode == 2
    sweep = run_train([*TINY, *planted, "experiment_name=sweep", "method.r=100000,3"], tmp_path, multirun=True,
                      check=False)
    assert sweep.returncode == 1
    run = tmp_path / "single/minilm/lora-r2/rte/seed0"
    assert summary(run)["status"] == "finished"
    assert summary(tmp_path / "single/minilm/lora-r100000/rte/seed0-bad")["status"] == "failed"
    text = _all_text(tmp_path) + "".join(p.stdout + p.stderr for p in (ok, failed, sweep))
    assert (tmp_path / "sweep" / "multirun.yaml").exists()  # Hydra's own record is there, and clean
    for value in (SECRET, TOKEN):
        assert value not in text
    assert not list(tmp_path.rglob(".hydra")), "Hydra's copies of the overrides are not written into run folders"


@pytest.mark.slow
def test_sweep_cells_differing_in_an_unlisted_key_train_in_their_own_folders(tmp_path: Path) -> None:
    args = [*TINY, "experiment_name=sweep", "train.lr=1e-3,2e-3"]
    run_train(args, tmp_path, multirun=True)
    summaries = sorted((tmp_path / "sweep").rglob("summary.json"))
    assert len(summaries) == 2, summaries
    lrs = sorted(yaml.safe_load((p.parent / "config.yaml").read_text())["train"]["lr"] for p in summaries)
    assert lrs == [1e-3, 2e-3]
    assert all(json.loads(p.read_text())["status"] == "finished" for p in summaries)
    # A re-run skips both (each finds its own folder) and creates nothing new.
    again = run_train(args, tmp_path, multirun=True)
    assert sorted((tmp_path / "sweep").rglob("summary.json")) == summaries
    assert again.stderr.count("skipped") + again.stdout.count("skipped") == 2


@pytest.mark.slow
def test_resume_or_skip_with_changed_settings_is_refused_by_name(tmp_path: Path) -> None:
    run_train(TINY, tmp_path)
    for extra in (["resume=true", "train.lr=7e-3"], ["train.max_steps=3"]):
        proc = run_train([*TINY, *extra], tmp_path, check=False)
        assert proc.returncode == 2
        assert "Differing options" in proc.stderr and "train." in proc.stderr
        assert "Traceback" not in proc.stderr


def test_config_diff_names_keys_and_ignores_launch_options() -> None:
    a = {"seed": 0, "train": {"lr": 1e-3, "num_threads": 1}, "logger": {"mode": "offline"}, "resume": False}
    b = {"seed": 0, "train": {"lr": 2e-3, "num_threads": 8}, "logger": {"mode": "disabled"}, "resume": True}
    assert config_diff(a, b) == ["train.lr: 0.001 -> 0.002"]


def test_run_folder_refuses_a_mismatch_and_redirects_a_sweep_cell(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "train": {"lr": 1e-3}}))
    (cell / "summary.json").write_text(json.dumps({"status": "finished"}))
    asked = {"seed": 0, "train": {"lr": 2e-3}, "skip_finished": True}
    with pytest.raises(Exception, match=r"train.lr: 0.001 -> 0.002"):
        RunFolder(cell, asked).decide()
    sweep = RunFolder(cell, asked, multirun=True)
    assert sweep.decide() == "new" and sweep.path != cell and sweep.path.name.startswith("cell-cfg")
    same = RunFolder(cell, {"seed": 0, "train": {"lr": 1e-3}, "skip_finished": True}, multirun=True)
    assert same.decide() == "skip" and same.path == cell


def test_resume_drops_events_of_replaced_steps(tmp_path: Path) -> None:
    lines = [{"event": "train", "step": s} for s in (1, 2, 3, 4)] + [{"event": "start", "step": 0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"event\": \"tr")
    moved = RunFolder(tmp_path, {}).drop_replaced_events(resumed_at=2)
    kept = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert moved == 3 and kept == [1, 2, 0]
    assert len((tmp_path / "metrics.replaced.jsonl").read_text().splitlines()) == 3


def test_secret_overrides_are_held_back_from_hydra() -> None:
    from spectune.train import split_secret_overrides

    kept, secrets = split_secret_overrides(["-m", "train.lr=1e-3", f"+logger.api_key={SECRET}", f"hub_token={TOKEN}",
                                            "run_tag=-x", "eval.max_new_tokens=8"])
    assert kept == ["-m", "train.lr=1e-3", "run_tag=-x", "eval.max_new_tokens=8"]  # a token count is no secret
    assert secrets == {"logger.api_key": SECRET, "hub_token": TOKEN}


def test_unwritable_runs_root_is_one_line_before_hydra_starts(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_train(TINY, blocker / "runs", check=False)
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "runs_root=" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("key", "secret"), [
    ("hf_token", True), ("logger.api_key", True), ("WANDB_API_KEY", True), ("db_password", True),
    ("auth_token", True), ("credentials", True), ("eval.max_new_tokens", False), ("tokenizer", False),
    ("num_tokens", False), ("keep_checkpoints", False), ("monkey", False)])
def test_secret_keys_are_whole_words(key: str, secret: bool) -> None:
    from spectune.config import is_secret_key

    assert is_secret_key(key) is secret


def test_an_option_added_since_the_run_is_not_a_difference() -> None:
    """A run recorded before an option existed used its default: it stays the same configuration."""
    recorded = {"seed": 0, "train": {"lr": 1e-3}}
    asked = {"seed": 0, "train": {"lr": 1e-3, "objective": "next_token", "rl": {"iterations": 10}}}
    assert config_diff(recorded, asked) == [] and config_diff(asked, recorded) == []


def test_rescoring_ignores_wall_clock_entries() -> None:
    from spectune.evaluate import max_difference

    a = {"t": {"accuracy": 0.5, "generation_seconds": 3.1}}
    b = {"t": {"accuracy": 0.5, "generation_seconds": 9.7}}
    assert max_difference(a, b) == 0.0
    assert max_difference(a, {"t": {"accuracy": 0.75, "generation_seconds": 3.1}}) == 0.25
