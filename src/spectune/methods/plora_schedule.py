"""PeriodicLoRA's stage schedule as a Trainer callback: unloads on optimizer steps, resume, LR restart.

- ``on_train_begin``: converts ``unload_every_examples`` to optimizer steps with the global batch
  (per-device batch × gradient accumulation × world size; it must divide), and on a resumed run rebuilds
  W_0 + Σ merged stages from the checkpoint's ``plora_stages.safetensors`` (the Trainer reloads the adapter, not W).
- ``on_step_end`` (after the optimizer step and the scheduler step of global step g, before that step's log and
  checkpoint): unloads when g is a multiple of the stage length, or (``unload_at_epoch_end``) the last step of an
  epoch; never at the final step (the last stage stays the adapter).
- ``on_save``: writes the stage history into the checkpoint folder, so a resume restores W exactly.
- ``schedule: restart``: the schedule's λ is evaluated at (step − b), b the last boundary, and the current LR is
  recomputed at each unload; ``continue`` leaves the scheduler alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def stage_length(spec: Any, per_device_batch: int, grad_accum: int, world_size: int) -> int | None:
    """The stage length in optimizer steps (None: epoch ends only)."""
    if spec.unload_every is not None:
        return int(spec.unload_every)
    if spec.unload_every_examples is None:
        return None
    global_batch = per_device_batch * grad_accum * world_size
    if spec.unload_every_examples % global_batch:
        raise ValueError(f"method.unload_every_examples={spec.unload_every_examples} is not a multiple of the global "
                         f"batch {global_batch} (= {per_device_batch} per device x {grad_accum} accumulation x "
                         f"{world_size} ranks); change it, the batch, or give method.unload_every in steps.")
    return spec.unload_every_examples // global_batch


class PLoRACallback(TrainerCallback):
    """Drives :meth:`PeriodicLoRA.unload` from optimizer steps; ``log_event(kind, step=..., **values)`` reports."""

    def __init__(self, method: Any, log_event: Callable[..., None] | None = None):
        self.method = method
        self.log_event = log_event
        self.every: int | None = None
        self.last_boundary = 0

    # ---------------------------------------------------------------------------------------------- schedule
    def _shifted(self, fn: Callable[[int], float]) -> Callable[[int], float]:
        def restarted(step: int) -> float:  # a plain function: LambdaLR's state_dict stores nothing for it
            return fn(step - self.last_boundary)
        return restarted

    def _refresh_lr(self, scheduler: Any) -> None:
        groups = scheduler.optimizer.param_groups
        for group, base_lr, fn in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
            group["lr"] = base_lr * fn(scheduler.last_epoch)
        scheduler._last_lr = [g["lr"] for g in groups]

    # ---------------------------------------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        spec = self.method.spec
        self.every = stage_length(spec, args.per_device_train_batch_size, args.gradient_accumulation_steps,
                                  args.world_size)
        if state.global_step > 0:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.method.restore(model, ckpt)
            self.last_boundary = max([s["step"] for s in self.method.stages], default=0)
            log.info("PLoRA: resumed at step %d with %d merged stage(s) restored into W.", state.global_step,
                     len(self.method.stages))
        if spec.schedule == "restart":
            if lr_scheduler is None or not hasattr(lr_scheduler, "lr_lambdas"):
                raise ValueError("method.schedule=restart needs a LambdaLR-based schedule (train.scheduler of the HF "
                                 "Trainer, e.g. constant_with_warmup or linear); use method.schedule=continue.")
            lr_scheduler.lr_lambdas = [self._shifted(fn) for fn in lr_scheduler.lr_lambdas]
            self._refresh_lr(lr_scheduler)
        if self.log_event is not None:
            self.log_event("plora_schedule", step=state.global_step, stage_steps=self.every,
                           epoch_end=spec.unload_at_epoch_end, momentum=spec.momentum,
                           momentum_split=spec.momentum_split, moments=spec.moments, schedule=spec.schedule)

    def boundary(self, state) -> str | None:
        """Why global step ``state.global_step`` ends a stage ("interval" | "epoch_end"), or None."""
        g = state.global_step
        if g <= 0 or (state.max_steps and g >= state.max_steps):
            return None
        if self.every and g % self.every == 0:
            return "interval"
        if self.method.spec.unload_at_epoch_end and state.epoch is not None and float(state.epoch).is_integer():
            return "epoch_end"
        return None

    def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        reason = self.boundary(state)
        if reason is None or model is None:
            return
        record = self.method.unload(model, state.global_step, optimizer, reason)
        self.last_boundary = state.global_step
        if self.method.spec.schedule == "restart" and lr_scheduler is not None:
            self._refresh_lr(lr_scheduler)
        log.info("PLoRA unload %d at step %d (%s): merged ||ΔW||_F = %.4g", record["stage"], record["step"], reason,
                 record["merged_norm"])
        if self.log_event is not None:
            self.log_event("plora_unload", **record)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.method.write_stages(Path(args.output_dir) / f"checkpoint-{state.global_step}")
