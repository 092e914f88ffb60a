"""benchmarks/saved_activations.py: the counted bytes follow what autograd must keep, on a tiny LLaMA."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "saved_activations", Path(__file__).resolve().parents[2] / "benchmarks" / "saved_activations.py")
saved_activations = importlib.util.module_from_spec(spec)
spec.loader.exec_module(saved_activations)


def test_lora_keeps_more_than_the_floor_and_dropout_more_still() -> None:
    args = ["--layers", "1", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
            "--vocab", "64", "--seq", "8", "--r", "4"]
    rows = saved_activations.main(args)
    floor, plain, dropped = rows["floor"], rows["lora dropout 0.0"], rows["lora dropout 0.05"]
    # LoRA keeps each adapted input for dL/dA: without dropout q, k, v share one x. With dropout every adapted
    # module keeps its own dropped copy (bf16, 2 B) and its mask (bool, 1 B) instead: 8 tokens, inputs of 64
    # features (q, k, v, up) and 128 (down).
    assert floor < plain < dropped
    per_module = [64, 64, 64, 64, 128]
    shared_inputs = [64, 64, 128]  # attention input, MLP input, down's input
    expected = 8 * (2 * sum(per_module) - 2 * sum(shared_inputs) + 1 * sum(per_module))
    assert dropped - plain == expected
