"""The method life cycle every fine-tuning method follows: attach → train hooks → save → load / merge.

The trainer, the validator and the analyses know a method only through this interface and the capability flags
below; they never branch on a method's name. Methods take plain dataclasses (no Hydra), so they can be used from a
notebook or another trainer.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

PEFT_PREFIX = "base_model.model."


class Method(ABC):
    """A fine-tuning method. Subclasses hold their hyper-parameters as a dataclass ``spec``.

    Class attributes (read by the trainer and the config validator before any model is built):

    - ``artifact``: the run-folder sub-folder its saved state goes to: ``"adapter"`` (PEFT's files plus the
      method's extras, loaded onto the base model by :meth:`load_adapter`) or ``"merged"`` (whole weights).
    - ``weight_decay_ok``: whether ``train.weight_decay > 0`` is meaningful for its trainable parameters.
    - ``update_form``: how :meth:`update_factors` gives the accumulated update ΔW = W_now − W_0: ``"lowrank"``
      (factors B, A with ΔW = B A) or ``"dense"`` (no factors: analyses read W_now − W_0 against a snapshot).
    """

    name: ClassVar[str] = "base"
    artifact: ClassVar[str] = "adapter"
    update_form: ClassVar[Literal["lowrank", "dense"]] = "lowrank"
    # False when decoupled weight decay would corrupt the method's parameters (SVF's z decays towards 0, so W' → 0).
    weight_decay_ok: ClassVar[bool] = True

    @abstractmethod
    def attach(self, model: nn.Module, task_type: str | None) -> nn.Module:
        """Return the model ready for training (adapters injected, trainable flags set).

        ``task_type``: PEFT's task type ("CAUSAL_LM", "SEQ_CLS"), or None for a plain torch module.
        """

    def check_schedule(self, total_steps: int, epochs: float | None = None) -> None:
        """Refuse (``ConfigError``) a run whose schedule would silently make this method another one; no-op here.

        ``total_steps``: the run's optimizer steps; ``epochs``: its epochs (None with a step budget).
        """
        return None

    def callbacks(self, log_event: Any = None) -> list[Any]:
        """Trainer callbacks that drive the method's schedule (dash switch, PLoRA unloads…).

        ``log_event(kind, step=..., **values)`` records what they do (the run's metrics.jsonl and W&B).
        """
        return []

    def run_record(self, model: nn.Module) -> dict[str, Any] | None:
        """What the method decided during training, as JSON (the run folder's ``method_record.json``), or None."""
        return None

    # ------------------------------------------------------------------------------------------ save / load
    @abstractmethod
    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """Write the method's trainable state (PEFT's format for adapters, whole weights for ``artifact="merged"``).

        The trainer writes this part itself with ``Trainer.save_model`` (which gathers ZeRO-3 partitions) and then
        calls :meth:`save_extras`; :meth:`save` does both outside a Trainer.
        """

    def save_extras(self, model: nn.Module, folder: Path) -> None:
        """Files the method needs beside the weights in ``folder`` (none by default)."""
        return None

    def save(self, model: nn.Module, folder: str | Path) -> None:
        """Write everything :meth:`load_adapter` needs into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_adapter(model, folder)
        self.save_extras(model, folder)

    def load_adapter(self, base_model: nn.Module, folder: str | Path, is_trainable: bool = False) -> nn.Module:
        """Attach the saved state in ``folder`` to ``base_model`` for inference (PEFT's loader by default)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable)

    @abstractmethod
    def merged(self, model: nn.Module) -> nn.Module:
        """Return a plain model with the learned update merged into its weights (the trained model untouched)."""

    # ------------------------------------------------------------------------------------------ analyses
    def update_factors(self, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """{matrix name in the plain model: (B, A)} with B A = W_now − W_0, fp32 on the CPU; None when dense.

        The rank tracker and the TSD tracker read the update through this; never a dense ΔW where factors exist.
        Collective under ZeRO-3 (every rank calls it).
        """
        return None

    def rank(self) -> int | None:
        """The adapter rank, or ``None`` for methods without one (full fine-tuning)."""
        return None

    # ------------------------------------------------------------------------------------------ objectives
    @contextmanager
    def base_model_context(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block, ``model`` computes the base policy π_base: the method's update switched off.

        Used by ``objective=reinforce`` for the KL term λ·KL(π_θ ‖ π_base) (Transformer², §3.2); the update is back
        on when the block ends, even on an error. Default: PEFT's ``model.disable_adapter()`` (the adapter layers
        pass W x through unchanged); a method whose update lives elsewhere overrides this (SVF: σ in place of
        σ ⊙ z). Raises ``NotImplementedError`` where the base cannot be recovered from the trained model (full
        fine-tuning keeps no copy of W_0).
        """
        disable = getattr(model, "disable_adapter", None)
        if disable is None:
            raise NotImplementedError(
                f"method={self.name} cannot switch its update off to compute the base policy (the model has no "
                "PEFT adapter to disable and the method keeps no copy of the base weights).")
        with disable():
            yield model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Return (trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class PretrainedParameters:
    """The pretrained model's parameters, noted before a method attaches, to count the trained model against them.

    :meth:`counts` gives (trainable, total) with total = the pretrained model's parameters + those the method added
    (LoRA's A and B, LoRA-Dash's scales, SVF's z): a method holding W as buffers (SVF keeps U, σ, V, not W) is measured
    against the same model size as one that keeps W, where :func:`trainable_parameters`' plain count drops W. The
    parameters are held weakly, so a method can still free each W it replaces while it attaches.
    """

    def __init__(self, model: nn.Module):
        params = list(model.parameters())
        self.total = sum(p.numel() for p in params)
        # by id, held weakly (a dead entry leaves, so an id reused by a new parameter is not mistaken for it;
        # a WeakSet would compare tensors with ==, which is elementwise)
        self.params: weakref.WeakValueDictionary[int, nn.Parameter] = weakref.WeakValueDictionary(
            (id(p), p) for p in params)

    def counts(self, model: nn.Module) -> tuple[int, int]:
        params = list(model.parameters())
        added = sum(p.numel() for p in params if self.params.get(id(p)) is not p)
        return sum(p.numel() for p in params if p.requires_grad), self.total + added


def plain_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules by their name in the plain (un-wrapped) model: PEFT's ``base_model.model.`` prefix removed."""
    return {n.removeprefix(PEFT_PREFIX): m for n, m in model.named_modules()}


def base_weight(layer: nn.Module) -> torch.Tensor:
    """W of a layer: the frozen base weight of an adapter wrapper, else the layer's own weight."""
    inner = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
    return inner.weight
