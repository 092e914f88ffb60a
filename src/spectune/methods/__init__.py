"""Fine-tuning methods, built from plain arguments (no Hydra): ``build_method(name, **kwargs)``."""

from __future__ import annotations

from typing import Any

from spectune.methods.base import Method, trainable_parameters
from spectune.methods.full import FullFineTuning
from spectune.methods.lora import LoRA, LoraSpec
from spectune.methods.lora_dash import LoRADash, LoraDashSpec
from spectune.methods.plora import PeriodicLoRA, PLoraSpec

METHODS = {
    "full": "full fine-tuning",
    "lora": "PEFT LoRA (baseline)",
    "lora_dash": "LoRA-Dash (LoRA + s task-specific directions)",
    "plora": "PeriodicLoRA (LoRA unloaded into W every stage)",
}


def build_method(name: str, **kwargs: Any) -> Method:
    """Build a method by name from keyword hyper-parameters (its spec's fields)."""
    if name == "full":
        return FullFineTuning()
    if name == "lora":
        return LoRA(LoraSpec(**kwargs))
    if name == "lora_dash":
        return LoRADash(LoraDashSpec(**kwargs))
    if name == "plora":
        return PeriodicLoRA(PLoraSpec(**kwargs))
    raise ValueError(f"Unknown method '{name}'. Known methods: {sorted(METHODS)} (choose with method=<name>).")


__all__ = ["METHODS", "FullFineTuning", "LoRA", "LoRADash", "LoraDashSpec", "LoraSpec", "Method", "PLoraSpec",
           "PeriodicLoRA", "build_method", "trainable_parameters"]
