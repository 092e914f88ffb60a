"""A real ``python -m spectune.train`` run on the composite ``mmlu_gsm8k``: SmolLM2 (2-layer cut), LoRA, a few steps on
a tiny carve-out; eval_results.json holds MMLU accuracy and GSM8K gold NLL / bits per byte, data_indices.json the
exact indices."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.training.helpers import run_train, summary


@pytest.mark.slow
def test_smollm2_lora_on_mmlu_gsm8k_writes_both_metrics(tmp_path: Path) -> None:
    run_train(["model=smollm2", "model.num_layers=2", "task=plora/mmlu_gsm8k", "task.n_train=4", "task.n_test=3",
               "method=lora", "train.max_steps=2", "train.batch_size=4", "train.max_length=192",
               "train.logging_steps=1", "train.save_steps=1000", "export_merged=false", "eval.batch_size=8"],
              tmp_path)
    run_dir = tmp_path / "single/smollm2/lora-r8/mmlu_gsm8k/seed0"
    s = summary(run_dir)
    assert s["status"] == "finished" and s["train_steps"] == 2 and s["task"] == "mmlu_gsm8k"
    res = json.loads((run_dir / "eval_results.json").read_text())
    assert res["mmlu"]["n"] == 3 and res["gsm8k"]["n"] == 3
    assert all(0.0 <= res["mmlu"][k] <= 1.0 for k in ("accuracy", "acc_norm", "accuracy_letter"))
    assert all(math.isfinite(res["gsm8k"][k]) and res["gsm8k"][k] > 0 for k in ("nll_per_token", "bits_per_byte"))
    assert res["gsm8k"]["n_tokens"] > 0 and res["gsm8k"]["n_bytes"] > res["gsm8k"]["n_tokens"]
    assert res["primary"] == {"metric": "accuracy", "value": res["mmlu"]["accuracy"], "tasks": ["mmlu"]}
    indices = json.loads((run_dir / "data_indices.json").read_text())
    assert indices["family"] == "instruct" and set(indices["test_indices"]) == {"mmlu", "gsm8k"}
    for t in ("mmlu", "gsm8k"):
        assert len(indices["train_indices"][t]) == 4 and len(indices["test_indices"][t]) == 3
        assert not set(indices["train_indices"][t]) & set(indices["test_indices"][t])
    assert len(indices["layout"]["mmlu"]) == 57
