"""The table targets' run folders and outputs per SCALE, read from `make -n` (nothing runs): smoke keeps its names,
gpu and paper add _<scale> to the run folder (the experiment's experiment_name), gpu names its outputs <name>_gpu
beside smoke's (the drivers' :func:`experiments.report.cli.output_name`), paper tables go to results/tables/paper."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from experiments.report.cli import output_name

REPO_ROOT = Path(__file__).resolve().parents[2]
# target → (driver module, stem: the smoke run folder runs/<stem>, the experiments <stem>_<scale>, the output stem)
TARGETS = {
    "reproduce-table1": ("experiments.table1_commonsense", "table1_commonsense"),
    "reproduce-table2": ("experiments.table2_glue", "table2_glue"),
    "reproduce-plora": ("experiments.plora_study", "plora"),
    "dash-ablations": ("experiments.dash_ablations", "dash_ablation"),
}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make_n(*args: str) -> str:
    """``make -n`` in the repository root (continuation lines joined), outside any calling make's flags."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.replace("\\\n", " ")


def driver_args(text: str, module: str) -> dict[str, str]:
    """The ``--option value`` pairs of the one ``python -m <module>`` line of ``text``."""
    (line,) = [line for line in text.splitlines() if f"-m {module} " in line]
    words = shlex.split(line)
    words = words[words.index(module) + 1:]
    return {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--") and i + 1 < len(words)}


@pytest.mark.parametrize("target", TARGETS)
def test_scale_picks_run_folder_experiment_and_output(target: str) -> None:
    """SCALE=smoke|gpu|paper: the sweep's experiment, the run folder (sweep, driver, archive-runs) and the driver's
    output folder, name and caption command."""
    module, stem = TARGETS[target]
    for scale in ("smoke", "gpu", "paper"):
        if target == "dash-ablations" and scale == "paper":
            continue  # no paper-scale ablation experiment
        text = make_n(target, f"SCALE={scale}", "SEEDS=2")
        runs = f"runs/{stem}" if scale == "smoke" else f"runs/{stem}_{scale}"
        experiment = f"{stem}_{scale}"
        # the run folder is the experiment's: runs/<experiment_name>
        conf = yaml.safe_load((REPO_ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text())
        assert f"runs/{conf['experiment_name']}" == runs, (target, scale)
        args = driver_args(text, module)
        assert args["--runs"] == runs and args["--experiment"] == experiment, (target, scale, args)
        assert f"experiment={experiment} +sweep=" in text
        assert f"make archive-runs RUNS={runs}\n" in text and f"find {Path(runs).name} " in text
        name = output_name(stem, scale)
        if target == "reproduce-plora":  # <out>/tables/plora_<scale>.md, <out>/figures/plora_rank_<scale>.png
            assert (args["--out"], args["--scale"]) == ("results", scale)
        elif target == "dash-ablations":  # <out>/<name>_{t,s,select}.png, <out>/<name>.json
            assert args["--out"] == "results/figures" and "--name" not in args
            assert name == ("dash_ablation" if scale == "smoke" else f"dash_ablation_{scale}")
            seeds = "ABLATION_SEEDS=1"
            assert args["--command"] == (f"make dash-ablations {seeds}" if scale == "smoke"
                                         else f"make dash-ablations SCALE={scale} {seeds}")
        else:  # <out>/<name>.md and .csv
            assert args["--out"] == ("results/tables/paper" if scale == "paper" else "results/tables")
            assert name == (f"{stem}_gpu" if scale == "gpu" else stem)
            assert args.get("--scale", scale) == scale
            assert args["--command"] == f"make {target} SCALE={scale} SEEDS=2"


def test_figures_runs_the_smoke_ablations_whatever_the_scale() -> None:
    """`make figures` is the smoke-scale figure set: its dash-ablations call stays at smoke scale."""
    text = make_n("figures", "SCALE=gpu")
    assert driver_args(text, "experiments.dash_ablations")["--runs"] == "runs/dash_ablation"
    assert "experiment=dash_ablation_smoke +sweep=" in text and "dash_ablation_gpu" not in text
