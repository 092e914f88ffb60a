"""Trainer callbacks that drive a method's schedule.

LoRA-Dash (methods.md): the one-time switch from the pre-launch phase to the dash phase.

- ``count: optimizer_steps`` (default): ``DashSwitchCallback`` switches every layer in ``on_step_end`` when
  ``state.global_step == t`` (after the t-th optimizer step, before the checkpoint/log of that step), or in
  ``on_train_begin`` when ``t == 0``.
- ``count: forward_calls`` (the official code): ``ForwardCallCounter`` puts a forward pre-hook on every dash layer
  that counts that layer's forward calls (training, evaluation and recomputation alike) and switches the layer just
  before its (t+1)-th call, i.e. after its t-th. The method installs it at ``attach``, so it counts with or without
  a Trainer; ``DashSwitchCallback`` then only reports what was switched.

Each switch is reported once through ``on_switch(records, step)`` (records: {layer: {"indices", "sigma", "rate",
…}}), logged, and kept in ``callback.history`` and ``method.records`` so the trainer can write them into the run
folder. Under DeepSpeed ZeRO-3 the weights are gathered for the SVD inside ``LoRADash.switch_layer`` and δ is
registered as an external parameter of its layer (it is read in a forward hook).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch import nn
from transformers import TrainerCallback

from spectune.methods.lora_dash_layer import CALLS, DELTA, dash_layers, model_identity

log = logging.getLogger(__name__)

OnSwitch = Callable[[dict[str, Any], int], None]


def _zero3_enabled() -> bool:
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:  # pragma: no cover - old transformers
        return False
    return bool(is_deepspeed_zero3_enabled())


def register_zero3_external(model: nn.Module) -> int:
    """Register every δ with its layer as a ZeRO-3 external parameter (it is used in the layer's forward hook)."""
    import deepspeed

    from spectune.methods.lora_dash import DELTA, dash_layers

    n = 0
    for _, layer in dash_layers(model):
        for p in getattr(layer, DELTA).values():
            deepspeed.zero.register_external_parameter(layer, p)
            n += 1
    return n


class ForwardCallCounter:
    """Per-layer forward-call counter (``count: forward_calls``): layer ℓ switches right after its t-th call."""

    def __init__(self, method: Any):
        self.method = method
        self.handles: dict[int, Any] = {}

    def install(self, model: nn.Module) -> None:
        """Hook every dash layer of ``model`` (idempotent)."""
        self.model_id = model_identity(model)
        for name, layer in dash_layers(model):
            if id(layer) not in self.handles:
                layer._lora_dash_name = name
                self.handles[id(layer)] = layer.register_forward_pre_hook(self._pre_hook)

    def remove(self) -> None:
        for h in self.handles.values():
            h.remove()
        self.handles.clear()

    def _pre_hook(self, layer: nn.Module, args: tuple) -> None:
        pending = [a for a in getattr(layer, DELTA) if a not in layer._lora_dash_on]
        if not pending:
            return
        t = self.method.spec.t
        for adapter in pending:
            n = layer._lora_dash_ncalls.get(adapter, 0)
            if n >= t:  # this is call t+1: switch before it runs
                self.method.switch_layer(layer._lora_dash_name, layer, self.model_id)
                return
            layer._lora_dash_ncalls[adapter] = n + 1
            getattr(layer, CALLS)[adapter].fill_(n + 1)  # persisted with the adapter (resume keeps counting)


class DashSwitchCallback(TrainerCallback):
    """Fires ``method.switch(model)`` at optimizer step ``t`` (count=optimizer_steps) and reports every switch."""

    def __init__(self, method: Any, on_switch: OnSwitch | None = None):
        self.method = method
        self.on_switch = on_switch
        self.history: list[dict[str, Any]] = []  # [{"step": int, "layers": {name: record}}]
        self._reported: set[str] = set()

    @property
    def t(self) -> int:
        return self.method.spec.t

    def on_train_begin(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if model is None:
            return
        if _zero3_enabled():
            register_zero3_external(model)
        if self.method.spec.count == "forward_calls":
            self.method.install_counter(model)
        elif self.t == 0:
            self._report(self.method.switch(model), state.global_step)

    def on_step_end(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if self.method.spec.count == "optimizer_steps":
            if state.global_step == self.t and model is not None:
                self._report(self.method.switch(model), state.global_step)
        else:  # forward_calls: the layers switched themselves; report the new ones
            new = {k: v for k, v in self.method.records.items() if k not in self._reported}
            self._report(new, state.global_step)

    def _report(self, records: dict[str, Any], step: int) -> None:
        if not records:
            return
        self._reported.update(records)
        self.history.append({"step": step, "layers": records})
        log.info("LoRA-Dash switch at step %d: %d layer(s); %s", step, len(records),
                 "; ".join(f"{k}: {v.get('indices') if isinstance(v, dict) else v}" for k, v in
                           list(records.items())[:4]) + (" …" if len(records) > 4 else ""))
        if self.on_switch is not None:
            self.on_switch(records, step)
