"""Full fine-tuning: every weight trains; the saved state is the whole model (``merged/``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from torch import nn

from spectune.methods.base import Method
from spectune.methods.registry import register

WEIGHTS_FILE = "model.safetensors"


@register("full", display="FT", description="full fine-tuning")
class FullFineTuning(Method):
    """All parameters trainable. Its saved state is the whole model; its update is dense (W_now − W_0)."""

    artifact: ClassVar[str] = "merged"
    update_form: ClassVar[Literal["lowrank", "dense"]] = "dense"

    def attach(self, model: nn.Module, task_type: str | None) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """The whole model: ``save_pretrained`` for transformers models, else one safetensors file."""
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(str(folder))
            return
        from safetensors.torch import save_model

        save_model(model, str(Path(folder) / WEIGHTS_FILE))

    def load_adapter(self, base_model: nn.Module, folder: str | Path, is_trainable: bool = False) -> nn.Module:
        """The saved weights in place of ``base_model``'s (a transformers model is re-read from ``folder``)."""
        folder = Path(folder)
        if hasattr(base_model, "from_pretrained") and (folder / "config.json").exists():
            model = type(base_model).from_pretrained(str(folder), dtype=base_model.dtype)
        else:
            from safetensors.torch import load_model

            if not (folder / WEIGHTS_FILE).exists():
                raise FileNotFoundError(f"{folder} holds no {WEIGHTS_FILE}: it was not saved by method=full.")
            load_model(base_model, str(folder / WEIGHTS_FILE))
            model = base_model
        for p in model.parameters():
            p.requires_grad_(is_trainable)
        return model

    def merged(self, model: nn.Module) -> nn.Module:
        return model
