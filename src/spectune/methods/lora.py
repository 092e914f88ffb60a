"""LoRA through PEFT, untouched: the baseline every other method is compared with.

ΔW = s·B A with s = α / r, B ∈ R^{d_out×r} zero-initialised, A ∈ R^{r×d_in} (Hu et al. 2021); PEFT's
``LoraConfig`` + ``get_peft_model`` inject it and ``merge_and_unload`` folds it into W.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from spectune.methods.base import Method
from spectune.methods.targets import check_rank, resolve_targets


@dataclass
class LoraSpec:
    """LoRA hyper-parameters: rank ``r``, scale numerator ``alpha`` (s = α/r), dropout and targets."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "v_proj"])
    bias: str = "none"
    modules_to_save: list[str] | None = None


class LoRA(Method):
    """PEFT LoRA. ``task_type`` is "SEQ_CLS" (the classifier head trains, as PEFT does) or "CAUSAL_LM"."""

    name = "lora"

    def __init__(self, spec: LoraSpec):
        self.spec = spec

    def peft_config(self, task_type: str):
        """The PEFT ``LoraConfig`` for this spec."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.spec.r, lora_alpha=self.spec.alpha, lora_dropout=self.spec.dropout,
            target_modules=self.spec.target_modules, bias=self.spec.bias, task_type=task_type,
            modules_to_save=self.spec.modules_to_save,
        )

    def attach(self, model: nn.Module, task_type: str) -> nn.Module:
        from peft import get_peft_model

        check_rank(resolve_targets(model, self.spec.target_modules), self.spec.r)
        return get_peft_model(model, self.peft_config(task_type))

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(str(folder))

    def merged(self, model: nn.Module) -> nn.Module:
        """A merged copy (W + sBA); the trained PEFT model is left as it was."""
        return copy.deepcopy(model).merge_and_unload()

    def rank(self) -> int | None:
        return self.spec.r
