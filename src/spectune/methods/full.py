"""Full fine-tuning: every weight trains; the "adapter" is the whole model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from spectune.methods.base import Method


class FullFineTuning(Method):
    """All parameters trainable. Its merged export is the model itself; it has no adapter files."""

    name = "full"

    def attach(self, model: nn.Module, task_type: str) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """Full fine-tuning has no adapter: nothing to write (the merged export holds the weights)."""

    def merged(self, model: nn.Module) -> nn.Module:
        return model
