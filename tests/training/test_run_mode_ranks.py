"""Rank 0 alone applies the never-overwrite rule under torchrun; every rank gets its answer (2 real gloo ranks)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, run_dir: str, resume: bool, out: str) -> None:
    import torch.distributed as dist

    from spectune.training.recipe import decide_run_mode
    from spectune.training.run_folder import RunFolder

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    config = {"seed": 0, "skip_finished": True, "resume": resume}
    dist.init_process_group("gloo")  # joined first, so rank 1's delay below is not absorbed by the rendezvous
    if rank == 1:
        time.sleep(1.0)  # the slow rank: rank 0 has long written its config when it gets here
    try:
        mode = decide_run_mode(RunFolder(Path(run_dir), config, multirun=False))
        if rank == 0 and mode == "new":
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / "config.yaml").write_text("seed: 0\n")
        result = mode
    except Exception as err:
        result = f"{type(err).__name__}"
    Path(out, f"rank{rank}").write_text(result)
    dist.barrier()
    dist.destroy_process_group()


def _run(tmp_path: Path, run_dir: Path, resume: bool) -> list[str]:
    out = tmp_path / f"out-{resume}"
    out.mkdir()
    mp.spawn(_worker, args=(_free_port(), str(run_dir), resume, str(out)), nprocs=2, join=True)
    return [(out / f"rank{r}").read_text() for r in (0, 1)]


def test_slow_rank_gets_rank0s_decision(tmp_path):
    run_dir = tmp_path / "cell"
    assert _run(tmp_path, run_dir, resume=False) == ["new", "new"]
    assert (run_dir / "config.yaml").exists()


def test_rank0s_refusal_reaches_every_rank(tmp_path):
    run_dir = tmp_path / "cell"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 0\n")  # an unfinished run, and resume=false
    assert _run(tmp_path, run_dir, resume=False) == ["RunFolderExistsError", "RunFolderExistsError"]
