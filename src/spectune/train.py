"""Entry point: ``python -m spectune.train model=… method=… task=… [scale=paper] [train.deepspeed=zero2]``.

Distributed: ``torchrun --nproc_per_node N -m spectune.train … train.deepspeed=zero2`` (ranks come from the
environment; Hydra rejects DeepSpeed's ``--local_rank`` argument, so do not use the ``deepspeed`` launcher
without ``--no_local_rank``). Sweeps: ``python -m spectune.train -m experiment=<table>``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from spectune.config import register_resolvers

register_resolvers()
log = logging.getLogger("spectune")


@hydra.main(config_path="../../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from spectune.training.recipe import train_and_evaluate

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    try:
        train_and_evaluate(cfg, run_dir, multirun=multirun)
    except Exception:
        if not multirun:
            raise
        log.exception("Cell %s failed; the sweep goes on (recorded in its summary.json).", run_dir)


if __name__ == "__main__":
    sys.exit(main())
