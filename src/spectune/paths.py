"""Where spectune keeps caches (dequantised models, SVDs) outside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the user cache root: ``$SPECTUNE_CACHE`` or ``$XDG_CACHE_HOME/spectune`` (``~/.cache/spectune``)."""
    root = os.environ.get("SPECTUNE_CACHE")
    if root:
        path = Path(root)
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spectune"
    path.mkdir(parents=True, exist_ok=True)
    return path
