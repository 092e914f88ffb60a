"""model=llama_shape: scripts/gpu/llama_shape_model.py's random-init LLaMA-shaped folder trains through
spectune.train (tiny size on the CPU; the 2-GPU measurement, scripts/gpu/deepspeed_2gpu.sh, uses LLaMA-3-8B's)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.training.helpers import REPO, run_train, summary

_spec = importlib.util.spec_from_file_location("llama_shape_model", REPO / "scripts" / "gpu" / "llama_shape_model.py")
llama_shape_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_shape_model)

TINY = ["--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
        "--vocab", "49152", "--dtype", "float32"]


@pytest.mark.slow
def test_random_init_llama_shape_trains_and_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):  # the script's own entry point, in-process (no second interpreter start-up)
        assert llama_shape_model.main(["--out", str(tmp_path / name), *TINY]) == 0
    a, b = ((tmp_path / n / "model.safetensors").read_bytes() for n in ("a", "b"))
    assert a == b, "same seed, different weights"
    assert json.loads((tmp_path / "a/llama_shape.json").read_text())["kv_heads"] == 2
    run_train(["model=llama_shape", f"model.name_or_path={tmp_path / 'a'}", "model.dtype=float32",
               "task=commonsense/boolq", "task.n_train=16", "task.n_test=4", "method=lora", "train.max_steps=2",
               "train.batch_size=8", "train.max_length=64", "export_merged=false", "eval.batch_size=4",
               "train.num_threads=1"], tmp_path / "runs")
    s = summary(tmp_path / "runs/single/llama_shape/lora-r8/boolq/seed0")
    assert s["status"] == "finished" and s["train_steps"] == 2 and s["total_params"] > 6_000_000
