"""The one place that resolves a model name to a local folder, embedded or from the Hugging Face hub."""

from __future__ import annotations

import os
from pathlib import Path

from spectune.errors import UserError
from spectune.models.embedded import EMBEDDED, embedded_dir, embedded_name


class ModelUnavailableError(UserError, RuntimeError):
    """A model cannot be had here: not embedded, not a local folder, and the hub is off-line or unreachable."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    on = {"1", "true", "yes", "on"}
    return any(os.environ.get(k, "").lower() in on for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _embedded_hint() -> str:
    return ", ".join(f"'{m.name}' ({m.description})" for m in EMBEDDED.values())


def resolve_model_path(name_or_path: str, revision: str | None = None) -> Path:
    """Return a local folder holding ``name_or_path``'s config and weights.

    Order: embedded model names and aliases; an existing local folder; otherwise a hub download through
    ``huggingface_hub.snapshot_download``. Offline (``HF_HUB_OFFLINE=1``) a name that is neither embedded nor a
    local folder fails at once, naming the embedded models, instead of waiting on the network.
    """
    if embedded_name(name_or_path):
        return embedded_dir(name_or_path)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return local
    if hub_offline():
        raise ModelUnavailableError(
            f"Model '{name_or_path}' is not embedded and not a local folder, and HF_HUB_OFFLINE is set, so it cannot "
            f"be downloaded. Use an embedded model ({_embedded_hint()}), pass a local folder as model.name_or_path, "
            "or unset HF_HUB_OFFLINE on a machine with network access."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, revision=revision))
    except Exception as e:  # network errors, gated repos, typos
        raise ModelUnavailableError(
            f"Could not download '{name_or_path}' from the hub ({type(e).__name__}: {e}). Embedded models that need no "
            f"network: {_embedded_hint()}."
        ) from e
