"""Real (not mocked) training runs through the CLI on the embedded models: loss falls, run folder complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.helpers import events, run_train, summary

MINILM = ["model=minilm", "task=glue/sst2", "task.n_train=96", "task.n_test=48", "train.batch_size=16",
          "train.logging_steps=1", "train.save_steps=1000", "export_merged=true"]


def _loss_falls(run_dir: Path, k: int = 5) -> tuple[float, float]:
    losses = [e["loss"] for e in events(run_dir, "train") if "loss" in e]
    assert len(losses) >= 2 * k, losses
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return first, last


@pytest.mark.slow
def test_minilm_lora_trains_and_writes_run_folder(tmp_path: Path) -> None:
    run_train([*MINILM, "method=lora", "train.epochs=4"], tmp_path)
    run_dir = tmp_path / "single/minilm/lora-r8/sst2/seed0"
    for name in ("config.yaml", "environment.json", "data_indices.json", "metrics.jsonl", "eval_results.json",
                 "summary.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "merged/config.json"):
        assert (run_dir / name).exists(), name
    s = summary(run_dir)
    assert s["status"] == "finished" and s["rank"] == 8 and s["train_steps"] == 24
    assert not (run_dir / "checkpoints").exists()  # resume points go once the run is finished
    first, last = _loss_falls(run_dir)
    assert last < first - 0.05, (first, last)
    res = json.loads((run_dir / "eval_results.json").read_text())
    assert 0.0 <= res["sst2"]["accuracy"] <= 1.0 and res["sst2"]["n"] == 48
    indices = json.loads((run_dir / "data_indices.json").read_text())
    assert indices and "train" in json.dumps(indices)
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["torch"] and "device" in env

    # The merged export (plain transformers) gives the adapter model's logits.
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from spectune.models import load_model_and_tokenizer

    base, tok = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval()
    merged = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "merged")).eval()
    batch = AutoTokenizer.from_pretrained(str(run_dir / "merged"))(["a fine film", "dull and slow"], padding=True,
                                                                    return_tensors="pt")
    with torch.no_grad():
        a, b = peft_model(**batch).logits, merged(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_minilm_full_finetuning_trains(tmp_path: Path) -> None:
    run_train([*MINILM, "method=full", "train.epochs=3", "export_merged=false"], tmp_path)
    run_dir = tmp_path / "single/minilm/full/sst2/seed0"
    s = summary(run_dir)
    assert s["status"] == "finished" and s["rank"] is None
    assert s["trainable_params"] == s["total_params"]
    assert (run_dir / "merged/model.safetensors").exists() and not (run_dir / "adapter").exists()
    first, last = _loss_falls(run_dir, k=3)
    assert last < first, (first, last)


@pytest.mark.slow
def test_smollm2_two_layer_cut_lora_loss_falls(tmp_path: Path) -> None:
    run_train(["model=smollm2", "model.num_layers=2", "task=commonsense/boolq", "task.n_train=48", "task.n_test=16",
               "method=lora", "train.epochs=2", "train.batch_size=8", "train.max_length=96", "train.lr=2e-3",
               "train.logging_steps=1", "train.save_steps=1000", "export_merged=false", "eval.batch_size=8"],
              tmp_path)
    run_dir = tmp_path / "single/smollm2/lora-r8/boolq/seed0"
    s = summary(run_dir)
    assert s["status"] == "finished" and s["train_steps"] == 12
    first, last = _loss_falls(run_dir, k=3)
    assert last < first - 0.1, (first, last)
    res = json.loads((run_dir / "eval_results.json").read_text())
    assert 0.0 <= res["boolq"]["accuracy"] <= 1.0
