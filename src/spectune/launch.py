"""What ``spectune.train`` needs from Hydra's launchers beyond the basic one (conf/hydra/launcher/, README
"From one run to a Slurm sweep").

* :func:`export_submitit_ranks`: a cell launched by hydra-submitit-launcher with several tasks (``slurm_8gpu``:
  ``tasks_per_node: 8``; ``local_2rank``) runs the Hydra job once per task; each task exports submitit's
  ``TorchDistributedEnvironment`` (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``LOCAL_WORLD_SIZE``) so the recipe sees what ``torchrun`` would have given it.
* :class:`SweepFailures`: a Hydra callback (conf/config.yaml, ``hydra.callbacks``) that, after a multirun whose
  cells ran in other processes (submitit: Slurm jobs or local subprocesses), reads the failed ``summary.json``
  files the sweep wrote, so ``spectune.train`` lists them and exits 1 as it does for the basic launcher (whose
  cells run in its own process and are collected directly).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("spectune")

# The failed cells of this process's sweep, (run folder, error): filled by spectune.train's job function (basic
# launcher) and by :class:`SweepFailures` (other launchers); spectune.train.cli lists them. Kept here, not in
# spectune.train, which runs as ``__main__`` (a second import of it would hold a second list).
FAILED: list[tuple[str, str]] = []

# A failed summary.json written this long before the sweep started still counts as the sweep's (clock skew between
# the submitting host and a cluster's file server).
CLOCK_SLACK_S = 2.0


def export_submitit_ranks() -> bool:
    """Inside a submitit job of more than one task, export the torch.distributed environment of this task (ranks
    from submitit's job environment, as torchrun sets them). Returns True when it did.

    Nothing is done outside submitit, for a one-task job, or when ``RANK`` is already set (a launcher of the user's
    own, e.g. torchrun inside the job's ``setup``). Every task keeps all of the node's GPUs visible and the recipe
    picks ``cuda:LOCAL_RANK`` (conf/hydra/launcher/slurm_8gpu.yaml asks for ``gpus_per_node``, not per task).
    """
    if not os.environ.get("SUBMITIT_EXECUTOR") or "RANK" in os.environ:
        return False
    import submitit

    job = submitit.JobEnvironment()
    if job.num_tasks <= 1:
        return False
    dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    log.info("submitit task %d of %d (local rank %d on %s): torch.distributed via %s:%d", dist.rank,
             dist.world_size, dist.local_rank, job.hostname, dist.master_addr, dist.master_port)
    return True


def failed_cells(sweep_dir: Path, since: float) -> list[tuple[str, str]]:
    """(run folder, error) of every failed ``summary.json`` under ``sweep_dir`` written at or after ``since`` (Unix
    time, less :data:`CLOCK_SLACK_S`); hidden folders (``.submitit``) are not searched."""
    out = []
    root = Path(sweep_dir)
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("summary.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            if path.stat().st_mtime < since - CLOCK_SLACK_S:
                continue
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(summary, dict) and summary.get("status") == "failed":
            out.append((str(path.parent), str(summary.get("error") or "")))
    return out


def launcher_runs_cells_elsewhere(config: DictConfig) -> bool:
    """True unless the multirun's launcher is Hydra's basic one (cells in this process)."""
    target = str(config.hydra.launcher.get("_target_", ""))
    return not target.endswith("BasicLauncher")


class SweepFailures(Callback):
    """Collect the failed cells of a multirun whose cells ran in other processes into :data:`FAILED`."""

    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.started is None or not launcher_runs_cells_elsewhere(config):
            return
        known = {str(Path(folder).resolve()) for folder, _ in FAILED}
        for folder, error in failed_cells(Path(str(config.hydra.sweep.dir)), self.started):
            if str(Path(folder).resolve()) not in known:
                FAILED.append((folder, error))
