"""The method life cycle every fine-tuning method follows: attach → train hooks → save / merge.

The trainer knows a method only through this interface. Methods take plain dataclasses (no Hydra), so they can
be used from a notebook or another trainer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from torch import nn


class Method(ABC):
    """A fine-tuning method. Subclasses hold their hyper-parameters as a dataclass ``spec``."""

    name: str = "base"

    @abstractmethod
    def attach(self, model: nn.Module, task_type: str) -> nn.Module:
        """Return the model ready for training (adapters injected, trainable flags set)."""

    def callbacks(self, log_event: Any = None) -> list[Any]:
        """Trainer callbacks that drive the method's schedule (dash switch, PLoRA unloads…).

        ``log_event(kind, step=..., **values)`` records what they do (the run's metrics.jsonl and W&B).
        """
        return []

    def run_record(self, model: nn.Module) -> dict[str, Any] | None:
        """What the method decided during training, as JSON (the run folder's ``method_record.json``), or None."""
        return None

    def save_extras(self, model: nn.Module, folder: Path) -> None:
        """Files the method needs beside PEFT's adapter files in ``folder`` (none by default)."""
        return None

    @abstractmethod
    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """Write the method's trainable state in PEFT's format (``adapter_config.json`` + safetensors)."""

    def load_adapter(self, base_model: nn.Module, folder: Path) -> nn.Module:
        """Attach the saved adapter in ``folder`` to ``base_model`` for inference (PEFT's loader by default)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(folder))

    @abstractmethod
    def merged(self, model: nn.Module) -> nn.Module:
        """Return a plain transformers model with the learned update merged into its weights."""

    def rank(self) -> int | None:
        """The adapter rank, or ``None`` for methods without one (full fine-tuning)."""
        return None


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Return (trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
