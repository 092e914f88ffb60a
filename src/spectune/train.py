"""Entry point: ``python -m spectune.train model=… method=… task=… [scale=paper] [train.deepspeed=zero2]``.

Distributed: ``torchrun --nproc_per_node N -m spectune.train … train.deepspeed=zero2`` (ranks come from the
environment; Hydra rejects DeepSpeed's ``--local_rank`` argument, so do not use the ``deepspeed`` launcher
without ``--no_local_rank``). Sweeps: ``python -m spectune.train -m experiment=<table>``; on Slurm add
``hydra/launcher=slurm_1gpu`` (or ``slurm_8gpu``: each cell's tasks take their ranks from submitit,
:mod:`spectune.launch`).

Bad input is refused with one message on stderr and exit status 2 (no traceback); a sweep trains every cell it
can, then lists the failed ones and exits 1. Overrides whose key looks secret (``is_secret_key``: tokens, API keys,
passwords) are taken off the command line before Hydra sees it and put back into the composed config, so Hydra
never writes or echoes them (multirun.yaml, error reports); spectune's own files scrub them.
"""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from spectune.cli import info_only, unwritable_folder
from spectune.config import is_secret_key, register_resolvers, scrub_text
from spectune.launch import FAILED, export_submitit_ranks

register_resolvers()
log = logging.getLogger("spectune")

# Filled while the process runs: the secret overrides held back from Hydra, and the failed cells of a sweep (one list
# shared with spectune.launch, whose Hydra callback adds the cells of submitit launchers).
SECRETS: dict[str, str] = {}
# Storage errors reported as one line (a full disk, a quota, a read-only or forbidden runs_root).
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def split_secret_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv without secret-looking ``key=value`` overrides, {key: value} of those taken out)."""
    kept, secrets = [], {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and is_secret_key(key.lstrip("+~")):
            secrets[key.lstrip("+~")] = value
        else:
            kept.append(arg)
    return kept, secrets


def _inject(cfg: DictConfig, secrets: dict[str, str]) -> None:
    with open_dict(cfg):
        for key, value in secrets.items():
            *path, leaf = key.split(".")
            parent = cfg
            for part in path:
                if part not in parent or parent[part] is None:
                    parent[part] = {}
                parent = parent[part]
            parent[leaf] = value


def _one_line(err: BaseException, cfg: Any) -> str:
    return scrub_text(f"{err}", cfg)


@hydra.main(config_path="../../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from spectune.errors import UserError
    from spectune.training.recipe import train_and_evaluate

    export_submitit_ranks()  # a cell of several submitit tasks (hydra/launcher=slurm_8gpu): ranks as torchrun's
    _inject(cfg, SECRETS)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    try:
        train_and_evaluate(cfg, run_dir, multirun=multirun)
    except UserError as err:
        if not multirun:
            print(f"spectune.train: error: {_one_line(err, cfg)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        FAILED.append((str(run_dir), _one_line(err, cfg)))
        log.error("Cell %s refused: %s", run_dir, _one_line(err, cfg))
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        message = f"cannot write under {cfg.runs_root}: {err.strerror} ({err.filename or run_dir}); free space or " \
                  "choose another runs_root=..."
        if not multirun:
            print(f"spectune.train: error: {message}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        FAILED.append((str(run_dir), message))
        log.error("Cell %s failed: %s", run_dir, message)
    except Exception as err:
        if not multirun:
            raise
        FAILED.append((str(run_dir), scrub_text(f"{type(err).__name__}: {err}", cfg)))
        log.error("Cell %s failed (recorded in its summary.json); the sweep goes on: %s", run_dir,
                  scrub_text(f"{type(err).__name__}: {err}", cfg))


def cli() -> int:
    """Run :func:`main` with secret overrides held back; a sweep with failed cells exits 1 after listing them."""
    sys.argv[1:], secrets = split_secret_overrides(sys.argv[1:])
    SECRETS.update(secrets)
    launcher = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("hydra/launcher=")), "basic")
    if secrets and launcher != "basic":
        print(f"spectune.train: error: secret overrides ({', '.join(sorted(secrets))}) are kept off Hydra's command "
              f"line, so the cells that hydra/launcher={launcher} starts in other processes would never see them; "
              "give them through the environment instead (e.g. export WANDB_API_KEY=...).", file=sys.stderr)
        return 2
    if not info_only(sys.argv[1:]):
        problem = unwritable_folder(sys.argv[1:], "runs_root", "runs")
        if problem:
            print(f"spectune.train: error: {problem}", file=sys.stderr)
            return 2
    main()
    if FAILED:
        print(f"spectune.train: {len(FAILED)} sweep cell(s) failed (each records its error in summary.json):",
              file=sys.stderr)
        for folder, error in FAILED:
            print(f"  {folder}: {error.splitlines()[0] if error else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
