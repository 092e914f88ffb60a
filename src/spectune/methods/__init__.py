"""Fine-tuning methods, built from plain arguments (no Hydra): ``build_method(name, **kwargs)``."""

from __future__ import annotations

from typing import Any

from spectune.methods.base import Method, trainable_parameters
from spectune.methods.full import FullFineTuning
from spectune.methods.lora import LoRA, LoraSpec
from spectune.methods.lora_dash import LoRADash, LoraDashSpec

METHODS = {
    "full": "full fine-tuning",
    "lora": "PEFT LoRA (baseline)",
    "lora_dash": "LoRA-Dash (LoRA + s task-specific directions)",
}


def build_method(name: str, **kwargs: Any) -> Method:
    """Build a method by name from keyword hyper-parameters (its spec's fields)."""
    if name == "full":
        return FullFineTuning()
    if name == "lora":
        return LoRA(LoraSpec(**kwargs))
    if name == "lora_dash":
        return LoRADash(LoraDashSpec(**kwargs))
    raise ValueError(f"Unknown method '{name}'. Known methods: {sorted(METHODS)} (choose with method=<name>).")


__all__ = ["METHODS", "FullFineTuning", "LoRA", "LoRADash", "LoraDashSpec", "LoraSpec", "Method", "build_method",
           "trainable_parameters"]
