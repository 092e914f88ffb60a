"""Fine-tuning methods, built from plain arguments (no Hydra): ``build_method(name, **kwargs)``.

Importing this package registers every method (:mod:`spectune.methods.registry` is the one list of them).
"""

from __future__ import annotations

from spectune.methods.base import Method, trainable_parameters
from spectune.methods.full import FullFineTuning
from spectune.methods.lora import LoRA, LoraSpec
from spectune.methods.lora_dash import LoRADash, LoraDashSpec
from spectune.methods.plora import PeriodicLoRA, PLoraSpec
from spectune.methods.registry import REGISTRY, build_method, entry, method_names
from spectune.methods.svf import SVF, SvfSpec

__all__ = ["REGISTRY", "FullFineTuning", "LoRA", "LoRADash", "LoraDashSpec", "LoraSpec", "Method", "PLoraSpec",
           "PeriodicLoRA", "SVF", "SvfSpec", "build_method", "entry", "method_names", "trainable_parameters"]
