"""The GPU queue of Transformer²'s tables at GPU scale (scripts/gpu/t2_queue.py) and its wait wrapper
(scripts/gpu/t2_after.sh): every run once, the grids' cells, and each line that reads other runs waits for the run
folders that earlier lines write (composed with Hydra; nothing runs)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments import grids

REPO_ROOT = Path(__file__).resolve().parents[2]
AFTER = REPO_ROOT / "scripts" / "gpu" / "t2_after.sh"


def _queue_module():
    spec = importlib.util.spec_from_file_location("t2_queue", REPO_ROOT / "scripts" / "gpu" / "t2_queue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_queue_runs_every_cell_once_and_waits_for_what_it_reads() -> None:
    q = _queue_module()
    lines = q.queue([0, 1, 2])
    names = [n for n, _ in lines]
    assert len(names) == len(set(names)) == 3 * (6 + 1 + 3 + 3 + 3 * 3 + 3)  # 75 runs
    written: set[str] = set()  # run folders of the lines so far (training: composed; scoring: not read by others)
    folders: dict[tuple[str, ...], str] = {}  # a cell's run folder but its seed (composed once per cell)
    with grids.hydra_compose():
        for name, cmd in lines:
            words = cmd.split()
            if words[:4] == ["python3", "-m", "spectune.train", "-m"]:
                cell, seed = tuple(words[4:-1]), words[-1].removeprefix("seed=")
                if cell not in folders:
                    cfg = grids.compose(words[4:])
                    folders[cell] = (f"runs/{cfg.experiment_name}/{cfg.model.name}/{cfg.method.label}/"
                                     f"{cfg.task.name}/seed{{}}{cfg.run_tag}")
                written.add(folders[cell].format(seed))
                continue
            if words[:2] == ["bash", "scripts/gpu/t2_after.sh"]:
                deps = words[2:words.index("--")]
                assert deps and set(deps) <= written, (name, set(deps) - written)
                words = words[words.index("--") + 1:]
            assert words[:3] in (["python3", "-m", "spectune.training.score_task"],
                                 ["python3", "-m", "spectune.adapt"]), name
            if "spectune.adapt" in words:
                assert " ".join(q.makefile_variable("T2_ADAPT_gpu")) in cmd
                assert "out_dir=runs/t2_table2_gpu/adapt" in cmd
    # the training lines are the grids' cells, every seed: 6 of Table 1 and the classification expert per seed
    assert len(written) == 3 * 7
    assert [n for n in names if "_svf_" in n] == names[:9]  # the SVF experts first
    with grids.hydra_compose():
        first = grids.compose(lines[0][1].split()[4:])
    assert (first.train.rl.iterations, first.scale_name, first.task.name) == (10, "gpu", "t2_gsm8k")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_after_runs_the_command_once_its_runs_finished_and_not_after_a_failure(tmp_path: Path) -> None:
    done, failed = tmp_path / "done", tmp_path / "failed"
    for folder, status in ((done, "finished"), (failed, "failed")):
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({"status": status}, indent=2))

    def after(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(AFTER), *args], capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin", "POLL": "0.1"})

    ok = after(str(done), "--", "sh", "-c", "echo ran; exit 7")
    assert ok.returncode == 7 and "ran" in ok.stdout
    bad = after(str(done), str(failed), "--", "sh", "-c", "echo ran")
    assert bad.returncode == 3 and "ran" not in bad.stdout and '"status": "failed"' in bad.stderr
    assert after(str(done), "sh").returncode == 2  # no "--"
