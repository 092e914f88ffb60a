"""Sweeps through hydra-submitit-launcher (conf/hydra/launcher/): the Slurm configs compose into the sbatch files
submitit would submit, and real multiruns of spectune.train go through submitit's local executor on the CPU (one
process per cell; two ranks per cell, slurm_8gpu's mechanism), re-runs skip finished cells and failed cells are
listed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.training.helpers import run_train, summary

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

CELL = ["model=minilm", "task=glue/rte", "task.n_train=16", "task.n_test=8", "train.batch_size=8",
        "train.max_steps=2", "train.save_steps=100", "export_merged=false", "method=lora", "train.num_threads=1"]


def _launcher(name: str, *extra: str) -> tuple[dict, object]:
    from experiments.grids import compose, hydra_compose

    with hydra_compose():
        cfg = compose(["experiment=table2_glue_paper", f"hydra/launcher={name}", *extra], hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True), cfg


def _sbatch(params: dict, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sbatch file submitit would write for one cell, from the launcher's parameters mapped as
    hydra_submitit_launcher's launch() maps them (nothing is submitted; submitit is told srun exists)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))

    params = {k: v for k, v in params.items() if k != "_target_"}
    init = {"slurm_max_num_timeout": params.pop("max_num_timeout")}
    params.pop("submitit_folder")
    executor = submitit.AutoExecutor(cluster="slurm", folder=folder, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    return executor._executor._make_submission_file_text("python -u -m submitit.core._submit <folder>", "uid")


@pytest.mark.parametrize(("name", "gpus", "tasks"), [("slurm_1gpu", 1, 1), ("slurm_8gpu", 8, 8)])
def test_slurm_configs_compose_into_sbatch_files(name: str, gpus: int, tasks: int, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    params, cfg = _launcher(name, "hydra.launcher.partition=gpu", "hydra.launcher.account=proj")
    assert params["_target_"].endswith("SlurmLauncher")
    assert params["name"] == "spectune-table2_glue_paper"
    assert params["submitit_folder"] == f"{cfg.hydra.sweep.dir}/.submitit/%j"
    text = _sbatch(params, tmp_path, monkeypatch)
    for line in (f"#SBATCH --gpus-per-node={gpus}", f"#SBATCH --ntasks-per-node={tasks}", "#SBATCH --nodes=1",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --job-name=spectune-table2_glue_paper"):
        assert line in text, (line, text)
    two_nodes, _ = _launcher(name, "hydra.launcher.nodes=2")
    assert "#SBATCH --nodes=2" in _sbatch(two_nodes, tmp_path, monkeypatch)


@pytest.mark.parametrize(("name", "tasks"), [("local", 1), ("local_2rank", 2)])
def test_local_configs_compose(name: str, tasks: int) -> None:
    params, _ = _launcher(name)
    assert params["_target_"].endswith("LocalLauncher")
    assert params["tasks_per_node"] == tasks and params["gpus_per_node"] == 0


@pytest.mark.slow
def test_sweep_through_submitit_local_runs_skips_and_lists_failures(tmp_path: Path) -> None:
    """Three cells at once through submitit's local executor: two train, one is refused (its error recorded, the
    others untouched); the sweep lists it and exits 1. A re-run skips the finished cells."""
    args = ["experiment_name=sweep", *CELL, "method.r=2,4,100000", "hydra/launcher=local"]
    first = run_train(args, tmp_path, multirun=True, check=False, timeout=300)
    cells = {r: tmp_path / f"sweep/minilm/lora-r{r}/rte/seed0" for r in (2, 4, 100000)}
    for r in (2, 4):
        s = summary(cells[r])
        assert s["status"] == "finished" and s["rank"] == r and s["train_steps"] == 2, s
        assert (cells[r] / "adapter/adapter_model.safetensors").exists()
    bad = summary(cells[100000])
    assert bad["status"] == "failed" and "method.r=100000" in bad["error"]
    assert first.returncode == 1, first.stderr[-3000:]
    assert "1 sweep cell(s) failed" in first.stderr and "lora-r100000" in first.stderr
    assert list((tmp_path / "sweep/.submitit").glob("*/*_0_log.out")), "submitit's executor did not run the cells"

    stamps = {r: (cells[r] / "summary.json").stat().st_mtime_ns for r in (2, 4)}
    time.sleep(0.05)
    again = run_train(args, tmp_path, multirun=True, check=False, timeout=300)
    assert {r: (cells[r] / "summary.json").stat().st_mtime_ns for r in (2, 4)} == stamps, "a finished cell re-ran"
    assert again.returncode == 1 and "lora-r100000" in again.stderr
    assert len(list(cells[100000].glob("summary.failed-*.json"))) == 1  # the earlier failure is set aside


@pytest.mark.slow
def test_two_ranks_per_cell_through_submitit_local(tmp_path: Path) -> None:
    """slurm_8gpu's mechanism at CPU size: one cell, two submitit tasks, ranks exported by spectune.launch."""
    run_train(["experiment_name=ranks", *CELL, "train.batch_size=4", "method.r=2", "hydra/launcher=local_2rank"],
              tmp_path, multirun=True, timeout=300)
    cell = tmp_path / "ranks/minilm/lora-r2/rte/seed0"
    assert summary(cell)["status"] == "finished"
    assert json.loads((cell / "environment.json").read_text())["world_size"] == 2
    logs = "".join(p.read_text() for p in (tmp_path / "ranks/.submitit").glob("*/*_log.out"))
    assert "submitit task 0 of 2" in logs and "submitit task 1 of 2" in logs


def test_failed_cells_reads_this_sweeps_failures_only(tmp_path: Path) -> None:
    import os

    from spectune.launch import failed_cells

    def write(rel: str, status: str, age_s: float) -> None:
        path = tmp_path / rel / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"status": status, "error": f"{rel} broke"}))
        t = time.time() - age_s
        os.utime(path, (t, t))

    write("m/lora-r2/rte/seed0", "failed", 0)
    write("m/lora-r4/rte/seed0", "finished", 0)
    write("m/lora-r8/rte/seed0", "failed", 3600)  # an earlier sweep's
    write(".submitit/123", "failed", 0)
    found = failed_cells(tmp_path, since=time.time() - 60)
    assert found == [(str(tmp_path / "m/lora-r2/rte/seed0"), "m/lora-r2/rte/seed0 broke")]
    assert failed_cells(tmp_path / "absent", since=0) == []


def test_secret_overrides_with_a_submitit_launcher_are_refused(monkeypatch, capsys) -> None:
    from spectune import train

    monkeypatch.setattr(sys, "argv", ["spectune.train", "-m", "+logger.api_key=abc", "hydra/launcher=local"])
    monkeypatch.setattr(train, "SECRETS", {})
    assert train.cli() == 2
    err = capsys.readouterr().err
    assert "export WANDB_API_KEY" in err and "abc" not in err


def test_export_submitit_ranks_only_inside_a_job_of_several_tasks(monkeypatch) -> None:
    import os

    from spectune.launch import export_submitit_ranks

    # A private copy of the environment: what export_submitit_ranks writes must not reach later tests.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("SUBMITIT_")
                                        and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                      "MASTER_PORT", "LOCAL_WORLD_SIZE")})
    assert export_submitit_ranks() is False  # not in a submitit job
    env = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "77", "SUBMITIT_LOCAL_NTASKS": "1",
           "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_GLOBALID": "0",
           "SUBMITIT_LOCAL_LOCALID": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert export_submitit_ranks() is False and "RANK" not in os.environ  # one task: nothing to export
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert export_submitit_ranks() is True
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"  # every task keeps the node's GPUs
    assert export_submitit_ranks() is False  # RANK set: left alone
