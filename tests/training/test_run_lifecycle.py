"""Resume after a real kill, the never-overwrite rule, failing cells in a sweep, and bad input before training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.helpers import REPO, cli_env, events, run_train, summary

FAST = ["model=minilm", "task=glue/rte", "task.n_train=64", "task.n_test=16", "train.batch_size=8",
        "train.logging_steps=1", "export_merged=false", "method=lora", "method.r=2"]


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    args = [*FAST, "train.epochs=3", "train.save_steps=4", "train.save_total_limit=3"]
    run_dir = tmp_path / "single/minilm/lora-r2/rte/seed0"
    cmd = [sys.executable, "-m", "spectune.train", f"runs_root={tmp_path}", "logger=disabled", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "checkpoints/checkpoint-8/trainer_state.json").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # a real kill, possibly mid-save: no clean-up code runs
    proc.wait()
    assert not (run_dir / "summary.json").exists()
    killed_steps = [e["step"] for e in events(run_dir, "train") if "loss" in e]

    # Without resume=true the unfinished folder is protected.
    clash = run_train(args, tmp_path, check=False)
    assert clash.returncode != 0 and "resume=true" in clash.stderr

    run_train([*args, "resume=true"], tmp_path)
    s = summary(run_dir)
    assert s["status"] == "finished" and s["train_steps"] == 24
    resumed = [e for e in events(run_dir, "start")][-1]
    assert resumed["resume"] is True
    later = [e["step"] for e in events(run_dir, "train") if "loss" in e and e["step"] > max(killed_steps)]
    steps_after_resume = [e["step"] for e in events(run_dir, "train") if "loss" in e][len(killed_steps):]
    # The resumed run starts after a saved checkpoint (step >= 8), not from step 1.
    assert steps_after_resume and min(steps_after_resume) > 8 and max(later) == 24


@pytest.mark.slow
def test_finished_run_is_never_overwritten(tmp_path: Path) -> None:
    args = [*FAST, "train.max_steps=3", "train.save_steps=100"]
    run_train(args, tmp_path)
    run_dir = tmp_path / "single/minilm/lora-r2/rte/seed0"
    before = (run_dir / "summary.json").read_bytes()
    mtime = (run_dir / "summary.json").stat().st_mtime_ns
    again = run_train(args, tmp_path)
    assert "skipped" in (again.stdout + again.stderr)
    assert (run_dir / "summary.json").read_bytes() == before and (run_dir / "summary.json").stat().st_mtime_ns == mtime
    refused = run_train([*args, "skip_finished=false"], tmp_path, check=False)
    assert refused.returncode != 0 and "never overwritten" in refused.stderr
    assert (run_dir / "summary.json").read_bytes() == before, "a refused run touched the finished results"
    run_train([*args, "run_tag=-b"], tmp_path)
    assert summary(tmp_path / "single/minilm/lora-r2/rte/seed0-b")["status"] == "finished"


@pytest.mark.slow
def test_failing_cell_does_not_take_the_sweep_down(tmp_path: Path) -> None:
    fast = [a for a in FAST if not a.startswith("method.r=")]
    proc = run_train(["experiment_name=sweep", *fast, "train.max_steps=2", "train.save_steps=100",
                      "method.r=100000,2"], tmp_path, multirun=True, check=False)
    ok = summary(tmp_path / "sweep/minilm/lora-r2/rte/seed0")
    bad = summary(tmp_path / "sweep/minilm/lora-r100000/rte/seed0")
    assert ok["status"] == "finished"
    assert bad["status"] == "failed" and "method.r=100000" in bad["error"]
    # The sweep trained what it could, then says which cells failed and exits non-zero.
    assert proc.returncode == 1
    assert "1 sweep cell(s) failed" in proc.stderr and "lora-r100000" in proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["method.target_modules=[nope_proj]"], "Target modules ['nope_proj'] are not in"),
        (["method.r=100000"], "method.r=100000 is larger than the smallest target layer"),
        (["task=glue/cola"], "HF_HUB_OFFLINE"),
        (["model.name_or_path=meta-llama/Llama-2-7b-hf"], "embedded"),
        (["method=nosuch"], "Could not find 'method/nosuch'"),
    ],
)
def test_bad_input_fails_before_training_with_the_fix(tmp_path: Path, args: list[str], fragment: str) -> None:
    """A few end-to-end CLI cases (each costs a Python and Hydra start); the full table of bad options runs in-process
    in tests/training/test_bad_input.py."""
    proc = run_train([*FAST, "train.max_steps=2", *args], tmp_path, check=False)
    assert proc.returncode != 0
    assert fragment in proc.stderr, proc.stderr[-3000:]
    assert not list(tmp_path.rglob("metrics.jsonl")), "training started despite bad input"
    assert not list(tmp_path.rglob("checkpoint-*"))


def test_resume_skips_a_checkpoint_cut_short_by_a_kill(tmp_path: Path) -> None:
    from spectune.training.run_folder import last_checkpoint

    ckpts = tmp_path / "checkpoints"
    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_step": 8}'), (12, None), (16, '{"global_st')):
        (ckpts / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (ckpts / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    # 16 has a truncated state file and 12 none: both were being written when the run died.
    assert last_checkpoint(tmp_path) == ckpts / "checkpoint-8"
    assert last_checkpoint(tmp_path / "nothing") is None
