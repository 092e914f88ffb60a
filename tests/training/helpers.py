"""Run the real CLI in a subprocess (as users do) and read run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_env(threads: int = 2) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def run_train(args: list[str], runs_root: Path, check: bool = True, timeout: int = 600,
              launcher: list[str] | None = None, multirun: bool = False, logger: str = "disabled",
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable, "-m"]), "spectune.train", *(["-m"] if multirun else []),
           f"runs_root={runs_root}", f"logger={logger}", *args]
    proc = subprocess.run(cmd, cwd=REPO, env={**cli_env(), **(extra_env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{_failed_cells(runs_root)}\n"
                             f"{proc.stdout[-4000:]}\n{_without_noise(proc.stderr)[-8000:]}")
    return proc


NOISE = ("[WARNING]", "compilers.C.base", "built successfully", "Warning:", "warnings.warn")


def _without_noise(text: str) -> str:
    """stderr without DeepSpeed's op-build chatter and warnings, so the real error fits in the message."""
    return "\n".join(line for line in text.splitlines() if not any(n in line for n in NOISE))


def _failed_cells(runs_root: Path) -> str:
    """The error recorded in every failed cell's summary.json under ``runs_root``."""
    out = []
    for path in Path(runs_root).rglob("summary.json"):
        try:
            s = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if s.get("status") == "failed":
            out.append(f"{path.parent}: {s.get('error')}")
    return "\n".join(out)


def events(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
