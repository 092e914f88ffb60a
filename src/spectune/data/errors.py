"""Errors of the data layer and the one off-line test they share."""

from __future__ import annotations

import os

from spectune.errors import UserError

_TRUE = {"1", "true", "yes", "on"}


class DataUnavailableError(UserError, RuntimeError):
    """Data cannot be had here: it needs the network and the hub is off-line or unreachable, or a file is missing."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value ("1", "true", "yes", "on")."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
