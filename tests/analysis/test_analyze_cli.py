"""``python -m spectune.analyze`` on a real PEFT adapter of the embedded MiniLM, checked against numpy float64."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spectune.analyze import main


@pytest.fixture()
def adapter_and_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict]:
    monkeypatch.setenv("SPECTUNE_CACHE", str(tmp_path / "cache"))
    from peft import LoraConfig, get_peft_model

    from spectune.models import load_model_and_tokenizer

    torch.manual_seed(0)
    base, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                            task_type="SEQ_CLS", init_lora_weights=False))
    model.save_pretrained(str(tmp_path / "adapter"))
    # A "full fine-tuning" reference whose update equals LoRA's own: W* = W + sBA.
    merged = model.merge_and_unload()
    merged.save_pretrained(str(tmp_path / "reference"))
    return tmp_path / "adapter", tmp_path / "reference", {"base": base}


def test_rates_match_numpy_and_self_reference_overlaps_fully(adapter_and_reference, tmp_path: Path) -> None:
    adapter, reference, _ = adapter_and_reference
    out = tmp_path / "analysis"
    assert main([str(adapter), "--base", "minilm", "--num-labels", "2", "--reference", str(reference),
                 "--out", str(out), "--plot", "layer.0.attention.self.query"]) == 0
    result = json.loads((out / "tsd_analysis.json").read_text())["matrices"]
    assert len(result) == 12  # 6 layers x (query, value)
    assert (out / "change_rate_profile.png").stat().st_size > 1000

    # Independent reference, float64 numpy: rates_i = |u_i^T (s B A) v_i| / sigma_i.
    from safetensors.torch import load_file

    from spectune.models import load_model_and_tokenizer

    base, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    state = load_file(str(adapter / "adapter_model.safetensors"))
    name = "bert.encoder.layer.3.attention.self.value"
    A = state[f"base_model.model.{name}.lora_A.weight"].double().numpy()
    B = state[f"base_model.model.{name}.lora_B.weight"].double().numpy()
    W = dict(base.named_modules())[name].weight.detach().double().numpy()
    U, S, Vt = np.linalg.svd(W)
    dW = 2.0 * B @ A
    expected = np.array([abs(U[:, i] @ dW @ Vt[i]) / S[i] for i in range(len(S))])
    got = np.array([np.nan if v is None else v for v in result[name]["rates"]])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert result[name]["top"] == list(np.argsort(-expected, kind="stable")[:8])
    # LoRA's update is the reference's: predicted and true TSD coincide.
    for e in result.values():
        assert e["overlap"]["recall"] == 1.0 and e["overlap"]["accuracy"] == 1.0


def test_existing_analysis_is_not_overwritten(adapter_and_reference, tmp_path: Path) -> None:
    adapter, _, _ = adapter_and_reference
    out = tmp_path / "analysis2"
    assert main([str(adapter), "--base", "minilm", "--num-labels", "2", "--out", str(out)]) == 0
    with pytest.raises(SystemExit, match="never overwritten"):
        main([str(adapter), "--base", "minilm", "--num-labels", "2", "--out", str(out)])


def test_bad_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="neither a run folder"):
        main([str(tmp_path)])
