"""What the Hydra entry points (``spectune.train``, ``spectune.adapt``) check before Hydra starts."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

INFO_FLAGS = ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help")


def info_only(argv: Sequence[str]) -> bool:
    """True when Hydra is asked to print something (help, the config) rather than run."""
    return any(a in INFO_FLAGS or a.startswith("--cfg") for a in argv)


def unwritable_folder(argv: Sequence[str], key: str, default: str) -> str | None:
    """None when the folder option ``key`` of ``argv`` (``default`` when absent) can be written, else the one-line
    reason. Hydra creates its output folder itself and would fail there with its own traceback."""
    root = next((a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith(f"{key}=")), default)
    if "," in root:  # a swept folder: each cell checks its own
        return None
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as err:
        return f"{key}={root} is not writable ({err.strerror}); choose another {key}=... or free space there."
    return None
