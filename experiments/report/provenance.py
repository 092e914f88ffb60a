"""The one provenance collector: where the numbers of a table or figure come from, read from its run folders.

:func:`collect` gathers, for the runs a table or figure uses: each run's commit and whether its work tree was dirty
(environment.json's ``git``, see ``spectune.training.run_folder.environment``), hardware, seeds, scales, models,
tasks, data carve-outs and sources, the training settings a caption quotes, optimizer steps, runtimes and the command.

Commits. A table's rows are compared as "the same but the method", which holds only if every run comes from one
committed state of the code. :func:`collect` therefore refuses (:class:`MixedCommitsError`, naming the commits, the
dirty runs and the fix) runs from more than one commit, from a dirty tree, or with no commit or tree state recorded
(a tree copy that set only ``SPECTUNE_GIT_COMMIT``), unless told ``allow_mixed_commits``; the caption then lists every
run's commit (:func:`experiments.report.render.commit_lines`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.report.vocabulary import display_method
from experiments.runs import FAILED, FINISHED, INCOMPLETE, MALFORMED, RunRecord, canonical_task

ALLOW_FLAG = "--allow-mixed-commits"

# Config settings a caption quotes, per config group (dotted path = value; values differing across runs joined by |).
TRAINING_KEYS = {
    "train": ("lr", "learning_rate", "epochs", "num_train_epochs", "max_steps", "batch_size",
              "per_device_train_batch_size", "grad_accum", "max_length", "warmup_ratio", "warmup_steps", "precision"),
    # LoRA-Dash: s directions after t pre-launch steps (what t counts), chosen by `select`; PLoRA and SVF keys later.
    "method": ("r", "alpha", "lora_alpha", "dropout", "s", "t", "count", "select"),
}
OPTIMIZER_STEPS = "optimizer steps"


# ----------------------------------------------------------------------------------------------------------- commits
@dataclass(frozen=True)
class RunCommit:
    """One run's code state: ``commit`` (None: not recorded), ``dirty`` (None: not recorded), where it was read."""

    run: str
    commit: str | None
    dirty: bool | None
    source: str | None = None

    @property
    def state(self) -> str:
        """``clean``, ``dirty``, ``tree state not recorded`` or ``commit not recorded``."""
        if self.commit is None:
            return "commit not recorded"
        if self.dirty is None:
            return "tree state not recorded"
        return "dirty" if self.dirty else "clean"

    @property
    def proven_clean(self) -> bool:
        """A recorded commit whose work tree had no uncommitted changes."""
        return self.commit is not None and self.dirty is False

    def text(self, short: bool = False) -> str:
        """``<commit>``, ``<commit> (dirty)``, ``<commit> (tree state not recorded …)`` or ``commit not recorded``."""
        if self.commit is None:
            return "commit not recorded"
        commit = self.commit[:7] if short else self.commit
        if self.dirty is None and self.source not in (None, "git"):
            return f"{commit} ({self.state}; from {self.source})"
        return commit if self.dirty is False else f"{commit} ({self.state})"


def relative(run: RunRecord, root: str | Path | None) -> str:
    """The run's path relative to ``root`` (as is when outside it or when ``root`` is None)."""
    if root is not None:
        try:
            return str(run.path.relative_to(root))
        except ValueError:
            pass
    return str(run.path)


def run_commit(run: RunRecord, root: str | Path | None = None, assume_commit: str | None = None) -> RunCommit:
    """The commit a run recorded: environment.json's ``git`` (commit, dirty, source), else summary.json's ``commit``
    (tree state unknown); ``assume_commit`` for a run that recorded none (labelled as given on the command line).

    summary.json's commit is the one that finished the run (environment.json is rewritten at every start): when the
    two differ, the run's commit is the summary's and its tree state unknown (a later start left environment.json).
    """
    env = run.environment or {}
    git = env.get("git") if isinstance(env.get("git"), Mapping) else {}
    commit, source = git.get("commit"), git.get("source", "git")
    if isinstance(commit, str) and run.commit and run.commit != commit:
        return RunCommit(relative(run, root), run.commit, None,
                         f"summary.json; environment.json records {commit[:7]} (a later start)")
    if not isinstance(commit, str) or not commit:
        commit, source = run.commit or env.get("git_commit") or env.get("commit"), "summary.json"
    if not isinstance(commit, str) or not commit:
        return RunCommit(relative(run, root), assume_commit, None, "--assume-commit" if assume_commit else None)
    dirty = git.get("dirty", env.get("git_dirty", env.get("dirty")))
    return RunCommit(relative(run, root), commit, dirty if isinstance(dirty, bool) else None, source)


def commit_groups(commits: Iterable[RunCommit]) -> dict[str, list[str]]:
    """``<commit text>`` → the runs that recorded it, largest group first (then by text)."""
    groups: dict[str, list[str]] = {}
    for c in commits:
        groups.setdefault(c.text(), []).append(c.run)
    return dict(sorted(((k, sorted(v)) for k, v in groups.items()), key=lambda kv: (-len(kv[1]), kv[0])))


def is_mixed(commits: Sequence[RunCommit]) -> bool:
    """Whether the runs are not all from one commit with a clean tree."""
    return len({c.commit for c in commits}) > 1 or not all(c.proven_clean for c in commits)


class MixedCommitsError(RuntimeError):
    """Runs of a table from several commits or a dirty tree; the message lists them and names the fix."""


def mixed_commits_message(commits: Sequence[RunCommit], what: str) -> str:
    """The refusal: how many commits, which runs are dirty (or unrecorded), and the two ways out."""
    distinct = sorted({c.commit or "commit not recorded" for c in commits})
    unclean = [c for c in commits if not c.proven_clean]
    head = f"refusing to build {what}: its {len(commits)} run folder(s) come from {len(distinct)} commit(s)"
    if unclean:
        head += f", and {len(unclean)} run folder(s) not from a clean committed tree (dirty, or not recorded)"
    lines = [head + ":"]
    for text, runs in commit_groups(commits).items():
        lines.append(f"  {text}: {len(runs)} run(s): {', '.join(runs)}")
    lines.append("A table compares its rows as runs of one code state. Fix: commit (or stash) your changes, move these "
                 "run folders aside (a sweep skips finished cells, it does not re-run them) and run the sweeps again; "
                 f"or pass {ALLOW_FLAG} to build it anyway, with each run's commit listed in the caption.")
    return "\n".join(lines)


def check_commits(commits: Sequence[RunCommit], what: str, allow_mixed_commits: bool = False) -> None:
    """Raise :class:`MixedCommitsError` when the runs are mixed (:func:`is_mixed`) and that is not allowed."""
    if commits and is_mixed(commits) and not allow_mixed_commits:
        raise MixedCommitsError(mixed_commits_message(commits, what))


# ----------------------------------------------------------------------------------------------------------- facts
def describe_device(environment: Mapping[str, Any] | None) -> str | None:
    """Hardware in words from environment.json: ``1 × NVIDIA H100 (cuda)``, ``cpu (x86_64, 16 logical cores)``,
    plus torch threads and world size; a plain string ``device`` is taken as is."""
    if not environment:
        return None
    parts: list[str] = []
    device = environment.get("device")
    if isinstance(device, Mapping):
        kind, name, count = device.get("type"), device.get("name"), device.get("count")
        if kind == "cuda":
            parts.append(f"{count} × {name} (cuda)" if count else f"{name} (cuda)")
        else:
            inner = ", ".join(x for x in (str(name) if name else "", f"{count} logical cores" if count else "") if x)
            parts.append(f"{kind or 'device'} ({inner})" if inner else str(kind or "device"))
    elif device is not None:
        parts.append(str(device))
    threads = environment.get("torch_threads", environment.get("torch_num_threads"))
    if isinstance(threads, int) and not isinstance(threads, bool):
        parts.append(f"{threads} torch threads")
    world = environment.get("world_size")
    if isinstance(world, int) and not isinstance(world, bool) and world > 1:
        parts.append(f"world size {world}")
    return ", ".join(parts) if parts else None


_SPLITS = {"train": "train", "train_indices": "train", "train_idx": "train", "test": "test", "test_indices": "test",
           "test_idx": "test", "eval": "test", "eval_indices": "test", "validation": "validation",
           "validation_indices": "validation", "dev": "validation", "val": "validation"}
SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def _is_index_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value)


def carve_out_sizes(data_indices: Mapping[str, Any] | None, default_task: str | None) -> dict[str, dict[str, int]]:
    """Split sizes per (canonical) task from data_indices.json: the lengths of the recorded index lists.

    Understands the layout ``spectune.data.tasks.write_indices`` writes (``train_indices``/``test_indices`` each
    mapping task → indices, ``n_train``/``n_test`` totals) and nested ones (``{task: {"train": [...], "test":
    [...]}}``, optionally under ``tasks``; ``{"train": [...]}`` at top level belongs to ``default_task``).
    ``n_train``/``n_test`` are used for ``default_task`` only when no index list names its split.
    """
    out: dict[str, dict[str, int]] = {}

    def add(task: str | None, split: str, size: int) -> None:
        if task is not None:
            out.setdefault(canonical_task(task) or task, {}).setdefault(split, size)

    def visit(node: Mapping[str, Any], task: str | None) -> None:
        for key, value in node.items():
            split = _SPLITS.get(str(key).lower())
            if split and _is_index_list(value):
                add(task, split, len(value))
            elif split and isinstance(value, Mapping):  # {"train_indices": {task: [...]}}
                for sub_task, indices in value.items():
                    if _is_index_list(indices):
                        add(str(sub_task), split, len(indices))
            elif isinstance(value, Mapping) and key not in ("origin", "requested", "sizes"):
                visit(value, task if key in ("tasks", "indices") else str(key))

    if isinstance(data_indices, Mapping):
        visit(data_indices, default_task)
        for split in ("train", "test"):
            total = data_indices.get(f"n_{split}")
            if isinstance(total, int) and not isinstance(total, bool) and default_task is not None:
                add(default_task, split, total)
    return out


def sizes_text(sizes: Mapping[str, int]) -> str:
    """``train 64, test 128``: split sizes in train, validation, test order."""
    ordered = sorted(sizes.items(), key=lambda kv: (SPLIT_ORDER.get(kv[0], 9), kv[0]))
    return ", ".join(f"{k} {v}" for k, v in ordered)


def data_sources(data_indices: Any) -> tuple[list[str], list[str]]:
    """What the data came from: the ``source`` kinds (``embedded (carve-out)`` when ``carve_out`` is true; nested
    per-task ``source`` strings too) and the ``origin`` strings (the split or file the indices refer to)."""
    kinds: list[str] = []
    origins: list[str] = []
    if not isinstance(data_indices, Mapping):
        return kinds, origins
    source = data_indices.get("source")
    if isinstance(source, str):
        kinds.append(f"{source} (carve-out)" if data_indices.get("carve_out") is True else source)

    def leaves(node: Any) -> None:
        if isinstance(node, str):
            origins.append(node)
        elif isinstance(node, Mapping):
            for value in node.values():
                leaves(value)

    leaves(data_indices.get("origin"))
    tasks = data_indices.get("tasks")
    if isinstance(tasks, Mapping):  # nested per-task records: {"tasks": {task: {"source": ...}}}
        kinds.extend(v["source"] for v in tasks.values() if isinstance(v, Mapping) and isinstance(v.get("source"), str))
    return kinds, origins


def training_settings(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Dotted path → value of the settings a caption quotes: :data:`TRAINING_KEYS` of the ``train`` and ``method``
    groups of config.yaml (``max_steps`` only when > 0: it overrides epochs)."""
    found: dict[str, str] = {}
    if not isinstance(config, Mapping):
        return found
    for group, keys in TRAINING_KEYS.items():
        node = config.get(group)
        if not isinstance(node, Mapping):
            continue
        for key in keys:
            value = node.get(key)
            if value is None or isinstance(value, (bool, Mapping, list)):
                continue
            if key == "max_steps" and isinstance(value, (int, float)) and value <= 0:
                continue
            found[f"{group}.{key}"] = str(value)
    return found


def num_key(text: str) -> tuple[int, float, str]:
    """Sort key: numbers numerically, then other strings."""
    try:
        return 0, float(text), text
    except ValueError:
        return 1, 0.0, text


def row_name(method: str | None, rank: int | None) -> str:
    """``FT``, ``LoRA r=8``: how a caption names a row's settings."""
    return display_method(method) + ("" if rank is None else f" r={rank}")


# ------------------------------------------------------------------------------------------------------- collector
@dataclass
class Provenance:
    """Where the numbers of a table or figure come from (see the module docstring)."""

    runs_root: str
    command: str
    counts: dict[str, int]
    scales: list[str]
    models: list[str]
    tasks: list[str]
    seeds: list[int]
    carve_out: dict[str, list[str]]
    sources: list[str]
    origins: list[str]
    commits: list[RunCommit]
    devices: list[str]
    settings_by_row: dict[str, dict[str, list[str]]]
    optimizer_steps: list[int]
    runtimes: list[float]
    wall_s: float | None = None
    allow_mixed_commits: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def mixed(self) -> bool:
        """Whether the runs are not all from one clean commit (only possible when allowed)."""
        return is_mixed(self.commits)

    @property
    def commit_texts(self) -> list[str]:
        """The distinct commits as text (``<sha>``, ``<sha> (dirty)`` …), sorted."""
        return sorted({c.text() for c in self.commits})

    @property
    def training(self) -> dict[str, list[str]]:
        """Settings every row shares (optimizer steps: among the rows that recorded them)."""
        common: dict[str, list[str]] = {}
        rows = list(self.settings_by_row.values())
        for key in sorted({k for settings in rows for k in settings}):
            values = [settings.get(key) for settings in rows]
            if key == OPTIMIZER_STEPS:  # only finished runs record it: rows whose runs all failed do not contradict
                values = [v for v in values if v is not None]
            if values and all(v == values[0] for v in values):
                common[key] = values[0]
        return common

    @property
    def training_by_row(self) -> dict[str, dict[str, list[str]]]:
        """Per row, the settings not shared by every row (rows with none left out)."""
        common = self.training
        by_row = {name: {k: v for k, v in sorted(settings.items()) if k not in common}
                  for name, settings in sorted(self.settings_by_row.items())}
        return {name: settings for name, settings in by_row.items() if settings}

    def settings(self, prefix: str = "") -> dict[str, list[str]]:
        """Every value of each setting whose path starts with ``prefix``, over all rows."""
        merged: dict[str, set[str]] = {}
        for settings in self.settings_by_row.values():
            for key, values in settings.items():
                if key.startswith(prefix):
                    merged.setdefault(key, set()).update(values)
        return {k: sorted(v, key=num_key) for k, v in sorted(merged.items())}

    def drop_row(self, name: str) -> None:
        """Forget a row's settings (e.g. the base model's: scored, not trained)."""
        self.settings_by_row.pop(name, None)

    @property
    def runtime_s_sum(self) -> float | None:
        """Sum of the finished runs' ``runtime_s`` (None when none recorded one)."""
        return math.fsum(self.runtimes) if self.runtimes else None


def collect(runs: Sequence[RunRecord], *, runs_root: str | Path, command: str, what: str,
            row_of: Callable[[RunRecord], str] | None = None, tasks: Sequence[str] | None = None,
            wall_s: float | None = None, allow_mixed_commits: bool = False, assume_commit: str | None = None,
            notes: Sequence[str] = ()) -> Provenance:
    """The provenance of ``runs`` (each run folder once; repeats of a path, e.g. per-task views, are merged).

    ``row_of``: the caption's row name of a run (default :func:`row_name` of method and rank); ``tasks``: the
    tasks whose carve-outs to list, in that order (default: every task met); ``what``: the table or figure, for
    the refusal. Raises :class:`MixedCommitsError` unless the runs come from one clean commit or
    ``allow_mixed_commits``.
    """
    row_of = row_of or (lambda run: row_name(run.method, run.rank))
    unique: dict[Path, RunRecord] = {}
    for run in runs:
        unique.setdefault(run.path, run)
    commits = [run_commit(run, runs_root, assume_commit) for run in unique.values()]
    check_commits(commits, what, allow_mixed_commits)

    carve: dict[str, set[str]] = {}
    per_row: dict[str, dict[str, set[str]]] = {}
    kinds: set[str] = set()
    origins: set[str] = set()
    steps: set[int] = set()
    for run in runs:  # every view: a composite run's carve-outs are read per task
        for task, sizes in carve_out_sizes(run.data_indices, run.task).items():
            if tasks is None or task in tasks:
                carve.setdefault(task, set()).add(sizes_text(sizes))
    for run in unique.values():
        found_kinds, found_origins = data_sources(run.data_indices)
        kinds.update(found_kinds)
        origins.update(found_origins)
        settings = per_row.setdefault(row_of(run), {})
        for path, value in training_settings(run.config).items():
            settings.setdefault(path, set()).add(value)
        train_steps = (run.summary or {}).get("train_steps")
        if isinstance(train_steps, int) and not isinstance(train_steps, bool):
            settings.setdefault(OPTIMIZER_STEPS, set()).add(str(train_steps))
            steps.add(train_steps)
    order = list(tasks) if tasks is not None else sorted(carve)
    finished = [r for r in unique.values() if r.status == FINISHED]
    return Provenance(
        runs_root=str(runs_root),
        command=command,
        counts={status: sum(1 for r in unique.values() if r.status == status)
                for status in (FINISHED, FAILED, INCOMPLETE, MALFORMED)},
        scales=sorted({r.scale for r in unique.values() if r.scale}),
        models=sorted({r.model for r in unique.values() if r.model}),
        tasks=sorted({r.task for r in unique.values() if r.task}),
        seeds=sorted({r.seed for r in unique.values() if r.seed is not None}),
        carve_out={t: sorted(carve[t]) for t in dict.fromkeys(order) if t in carve},
        sources=sorted(kinds),
        origins=sorted(origins),
        commits=sorted(commits, key=lambda c: c.run),
        devices=sorted({d for d in (describe_device(r.environment) for r in unique.values()) if d}),
        settings_by_row={name: {k: sorted(v, key=num_key) for k, v in sorted(s.items())}
                         for name, s in sorted(per_row.items())},
        optimizer_steps=sorted(steps),
        runtimes=[r.runtime_s for r in finished if r.runtime_s is not None],
        wall_s=wall_s,
        allow_mixed_commits=allow_mixed_commits,
        notes=list(notes),
    )
