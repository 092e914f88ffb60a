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
    # LoRA keeps each adapted input for dL/dA: without dropout q, k, v share one x. With dropout the fused forward
    # (lora_fused.DropoutMatmul) keeps that same x and each adapted module's mask packed 8 elements to a byte, in
    # place of a dropped bf16 copy (2 B) and a bool mask (1 B) per module: 8 tokens, inputs of 64 features (q, k, v,
    # up) and 128 (down).
    assert floor < plain < dropped
    per_module = [64, 64, 64, 64, 128]
    assert dropped - plain == sum(-(-8 * d // 8) for d in per_module)
