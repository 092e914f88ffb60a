"""Editing trainable weights and their optimizer state *where the optimizer keeps them*.

A method that rewrites weights between optimizer steps (PeriodicLoRA's unload) must change the copy the optimizer
updates, or the next step silently restores the old values:

- plain PyTorch / accelerate (fp32 weights, autocast for bf16): the module's parameter is that copy;
- DeepSpeed ZeRO-1/2/3: the optimizer updates flat fp32 partitions and copies them back into the module's
  parameters after each step; ``deepspeed.utils.safe_set_full_fp32_param`` / ``safe_set_full_optimizer_state``
  write a full value into the partition each rank owns, so every rank calls them with the same full value;
- ZeRO-3 also partitions the module's parameters themselves: they are gathered for editing, rank 0's edit kept.

Moments. ``reset``: plain PyTorch drops the parameter's state, so the next step starts it as at step 0 (moments
and bias-correction count); DeepSpeed keeps one step counter per flat parameter group, so there the moments are
zeroed and the group's step count goes on (bias correction ≈ 1 after warm-up). ``prune``: every state tensor of
the parameter's shape (exp_avg, exp_avg_sq) keeps a random ``keep`` share of its entries, the rest zeroed
(PeriodicLoRA authors: 99.9% zeroed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

ADAM_KEYS = ("exp_avg", "exp_avg_sq")


def deepspeed_managed(param: torch.Tensor) -> bool:
    """True when DeepSpeed's ZeRO optimizer holds the fp32 master of ``param``."""
    return hasattr(param, "ds_id") or hasattr(param, "_hp_mapping")  # ZeRO-3 / ZeRO-1,2 (None off this rank)


@contextmanager
def editable(params: list[torch.Tensor], modify: bool = True) -> Iterator[None]:
    """Gather ZeRO-3 partitioned ``params`` for the block (edits by rank 0 kept when ``modify``); else a no-op."""
    zero = [p for p in params if hasattr(p, "ds_id")]
    if not zero:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(zero, modifier_rank=0 if modify else None):
        yield


def set_trainable(param: torch.Tensor, value: torch.Tensor) -> None:
    """Make ``value`` the optimizer's copy of ``param`` too (the module's copy is written by the caller)."""
    if deepspeed_managed(param):
        from deepspeed.utils import safe_set_full_fp32_param

        safe_set_full_fp32_param(param, value.to(torch.float32))


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The innermost ``torch.optim.Optimizer`` of an accelerate / Trainer wrapper."""
    opt = optimizer
    while not isinstance(opt, torch.optim.Optimizer) and hasattr(opt, "optimizer"):
        opt = opt.optimizer
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"Cannot find the torch optimizer inside {type(optimizer).__name__}.")
    return opt


def _mask(shape: torch.Size, keep: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) < keep).to(torch.float32)


@torch.no_grad()
def reset_moments(params: list[torch.Tensor], optimizer: Any, mode: str = "reset", keep: float = 0.001,
                  generator: torch.Generator | None = None) -> None:
    """Reset (``mode="reset"``) or prune (``"prune"``, keep a random ``keep`` share) the optimizer state of
    ``params``. Collective under DeepSpeed (every rank calls it, same order, same ``generator`` seed)."""
    if mode not in ("reset", "prune"):
        raise ValueError(f"moments mode {mode!r} is not 'reset' or 'prune'.")
    generator = generator or torch.Generator().manual_seed(0)
    if any(deepspeed_managed(p) for p in params):
        from deepspeed.utils import safe_get_full_optimizer_state, safe_set_full_optimizer_state

        for p in params:
            for key in ADAM_KEYS:
                if mode == "reset":
                    value = torch.zeros(p.ds_shape if hasattr(p, "ds_shape") else p.shape, dtype=torch.float32)
                else:
                    full = safe_get_full_optimizer_state(p, key)
                    value = full.float().cpu() * _mask(full.shape, keep, generator)
                safe_set_full_optimizer_state(p, value.to(_state_device(p)), key)
        return
    if optimizer is None:
        return
    opt = _torch_optimizer(optimizer)
    for p in params:
        if mode == "reset":
            opt.state.pop(p, None)
            continue
        state = opt.state.get(p, {})
        mask = _mask(p.shape, keep, generator)
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                v.mul_(mask.to(device=v.device, dtype=v.dtype))


def _state_device(param: torch.Tensor) -> torch.device:
    return param.device if param.device.type != "meta" else torch.device("cpu")
