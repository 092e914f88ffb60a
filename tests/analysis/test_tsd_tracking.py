"""TSD tracking during training: overlaps of LoRA's predicted directions with a reference run's true ones."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from spectune.methods import LoRA, LoraSpec
from spectune.training.tsd_tracking import TSDTracker


def _lora_minilm():
    from peft import LoraConfig, get_peft_model

    from spectune.models import load_model_and_tokenizer

    torch.manual_seed(0)
    base, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS",
                                           init_lora_weights=False))


def _method() -> LoRA:
    """The method object whose update the tracker reads (its factors come from the model's LoRA layers)."""
    return LoRA(LoraSpec(r=4, alpha=8, target_modules=["query", "value"]))


def test_reference_equal_to_lora_update_gives_full_overlap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPECTUNE_CACHE", str(tmp_path / "cache"))
    model = _lora_minilm()
    copy.deepcopy(model).merge_and_unload().save_pretrained(str(tmp_path / "ref"))
    logged = []
    tracker = TSDTracker(tmp_path / "ref", every=2, log=lambda kind, **kw: logged.append((kind, kw)), model_id="minilm",
                         method=_method())
    tracker.on_train_begin(None, SimpleNamespace(global_step=0), None, model=model)
    kind, ev = logged[-1]
    assert kind == "tsd" and ev["layers"] == 12 and ev["recall"] == 1.0 and ev["accuracy"] == 1.0

    # Move LoRA away from the reference: new random B, the overlap must drop below 1 somewhere.
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "lora_B") and "default" in getattr(m, "lora_B", {}):
                m.lora_B["default"].weight.copy_(torch.randn_like(m.lora_B["default"].weight))
    tracker.on_step_end(None, SimpleNamespace(global_step=2), None, model=model)
    assert logged[-1][1]["accuracy"] < 1.0
    tracker.on_step_end(None, SimpleNamespace(global_step=3), None, model=model)  # not a multiple of every
    assert len(logged) == 2


def test_missing_reference_is_explained(tmp_path: Path) -> None:
    tracker = TSDTracker(tmp_path, every=2, log=lambda *a, **k: None, model_id="minilm",
                         method=_method())
    with pytest.raises(FileNotFoundError, match="full fine-tuning run folder"):
        tracker.on_train_begin(None, SimpleNamespace(global_step=0), None, model=_lora_minilm())
