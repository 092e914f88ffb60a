"""W&B offline gets the same events as metrics.jsonl; secrets from the environment reach no file of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.helpers import events, run_train

SECRET = "sk-spectune-test-8f3a1c"


@pytest.mark.slow
def test_wandb_offline_logs_same_events_and_no_secret(tmp_path: Path) -> None:
    proc = run_train(["model=minilm", "task=glue/rte", "task.n_train=32", "task.n_test=8", "method=lora",
                      "method.r=2", "train.batch_size=8", "train.max_steps=4", "train.logging_steps=1",
                      "train.save_steps=100", "export_merged=false"], tmp_path, logger="offline",
                     extra_env={"WANDB_MODE": "offline", "WANDB_API_KEY": SECRET, "HF_TOKEN": SECRET,
                                "OPENAI_API_KEY": SECRET})
    run_dir = tmp_path / "single/minilm/lora-r2/rte/seed0"
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list(run_dir.rglob("*"))
    # The offline run's record log (protobuf) holds every train event's loss and the eval metric, as JSON values.
    blob = next(offline[0].glob("*.wandb")).read_bytes()
    j_losses = [e["loss"] for e in events(run_dir, "train") if "loss" in e]
    result = json.loads((run_dir / "eval_results.json").read_text())
    assert len(j_losses) == 4
    for loss in j_losses:
        assert json.dumps(loss).encode() in blob, loss
    assert b"rte/accuracy" in blob and json.dumps(result["rte"]["accuracy"]).encode() in blob
    # The console summary is printed at the end of the run.
    assert "run folder" in proc.stdout and "eval rte" in proc.stdout
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f"secret leaked into {f}"
