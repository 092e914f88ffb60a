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


def installed_package_dir(package: str, missing: str) -> Path:
    """Folder of an installed package, found without importing it; ``ModuleNotFoundError(missing)`` if absent."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(missing)
    return Path(next(iter(spec.submodule_search_locations)))
