"""python -m spectune.training.score_task: a row that trains nothing (the base model, or a finished run scored on
another task), in a run folder the table drivers read; never overwritten; unfinished or foreign runs refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spectune.training.score_task import output_folder, score
from tests.training.helpers import REPO, cli_env


def test_output_folder_names_the_row_and_the_source_task(tmp_path: Path) -> None:
    assert output_folder(tmp_path, "smollm2", "t2_math", 1, None) == tmp_path / "smollm2/base/t2_math/seed1"
    source = {"label": "lora-r16", "task": "t2_gsm8k"}
    assert output_folder(tmp_path, "smollm2", "t2_math", 0, source) == (
        tmp_path / "smollm2/lora-r16-from-t2_gsm8k/t2_math/seed0")


def _fake_run(folder: Path, status: str, model: str = "smollm2") -> Path:
    folder.mkdir(parents=True)
    cfg = {"model": {"name": model}, "method": {"name": "lora", "label": "lora-r16", "r": 16},
           "task": {"name": "t2_gsm8k"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "summary.json").write_text(json.dumps({"status": status}))
    return folder


def test_unfinished_or_other_model_runs_are_refused_before_loading(tmp_path: Path) -> None:
    failed = _fake_run(tmp_path / "failed", "failed")
    with pytest.raises(SystemExit, match="not a finished run"):
        score(tmp_path / "out", "t2_table2_smoke", ["task=t2/math"], failed)
    other = _fake_run(tmp_path / "other", "finished", model="minilm")
    with pytest.raises(SystemExit, match="trained model=minilm"):
        score(tmp_path / "out", "t2_table2_smoke", ["task=t2/math"], other)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_base_row_scores_the_experiments_carve_out_once(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "spectune.training.score_task", "--experiment", "t2_table2_smoke", "--runs",
           str(tmp_path), "model.num_layers=2", "task=t2/arc_challenge", "task.n_test=2", "eval.max_new_tokens=4"]
    first = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "smollm2" / "base" / "t2_arc_challenge" / "seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["method"], summary["task"], summary["status"]) == ("base", "t2_arc_challenge", "finished")
    results = json.loads((run / "eval_results.json").read_text())["t2_arc_challenge"]
    assert results["n"] == 2 and "bits_per_byte" in results and "exact_match" in results
    assert json.loads((run / "data_indices.json").read_text())["test_indices"]["t2_arc_challenge"]
    before = (run / "summary.json").read_text()
    again = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "never overwritten" in again.stdout
    assert (run / "summary.json").read_text() == before
