"""The untrained model's row: same carve-out as the sweep, a run folder with method "base", never overwritten."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.helpers import REPO, cli_env


@pytest.mark.slow
def test_base_model_scores_the_sweeps_carve_out_once(tmp_path):
    cmd = [sys.executable, "-m", "spectune.training.base_model", "--experiment", "plora_smoke", "--runs",
           str(tmp_path), "model.num_layers=2", "task.n_train=4", "task.n_test=4", "train.max_length=96"]
    first = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "base" / "seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "base" and summary["status"] == "finished"
    results = json.loads((run / "eval_results.json").read_text())
    assert results["mmlu"]["n"] == 4 and results["gsm8k"]["n"] == 4
    indices = json.loads((run / "data_indices.json").read_text())
    assert indices  # the exact carve-out is recorded, as for trained runs
    before = (run / "summary.json").read_text()
    again = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "never overwritten" in again.stdout
    assert (run / "summary.json").read_text() == before
