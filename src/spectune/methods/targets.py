"""Checks on target modules before any adapter is injected, so bad input fails with a message naming the fix."""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from spectune.errors import ConfigError


def linear_module_names(model: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` in ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def matches(name: str, targets: Sequence[str] | str) -> bool:
    """PEFT's rule: a list entry matches a module name equal to it or ending in ``.entry``; a string is a regex."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def resolve_targets(model: nn.Module, targets: Sequence[str] | str) -> list[nn.Linear]:
    """Return the linear layers ``targets`` selects; raise ``ValueError`` naming the fix if some select none."""
    names = linear_module_names(model)
    if isinstance(targets, str):
        chosen = [n for n in names if matches(n, targets)]
        missing = [] if chosen else [targets]
    else:
        chosen = [n for n in names if matches(n, targets)]
        missing = [t for t in targets if not any(matches(n, [t]) for n in names)]
    if missing or not chosen:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ConfigError(
            f"Target modules {missing} are not in {type(model).__name__}. Its linear layers end in {suffixes}. "
            "Set method.target_modules (or the model config's target_modules) to names from that list."
        )
    modules = dict(model.named_modules())
    return [modules[n] for n in chosen]


def check_rank(layers: Sequence[nn.Linear], r: int) -> None:
    """Raise if ``r`` exceeds min(d_out, d_in) of any target layer (BA could not have rank r)."""
    if r < 1:
        raise ConfigError(f"method.r={r} must be a positive integer.")
    smallest = min(min(m.in_features, m.out_features) for m in layers)
    if r > smallest:
        raise ConfigError(
            f"method.r={r} is larger than the smallest target layer (min(d_out, d_in) = {smallest}); "
            f"choose method.r <= {smallest} or drop that layer from the target modules."
        )
