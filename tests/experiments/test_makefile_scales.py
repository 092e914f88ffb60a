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


# Transformer²'s tables: target → (driver module, stem). Run folders runs/<stem>[_<scale>] as the tables above; the
# drivers name their outputs <stem>_<scale> at every scale (t2_table1_smoke, t2_table1_gpu).
T2_TARGETS = {"reproduce-t2-table1": ("experiments.t2_table1", "t2_table1"),
              "reproduce-t2-table2": ("experiments.t2_table2", "t2_table2")}


def _words(text: str, marker: str) -> list[list[str]]:
    """The words after ``marker`` on every line of ``text`` that has it (up to a ``||``)."""
    return [line.split(marker, 1)[1].split("||")[0].split() for line in text.splitlines() if marker in line]


def test_t2_scale_picks_run_folders_experiments_and_adapt_sizes() -> None:
    """SCALE=smoke|gpu|paper for make reproduce-t2-table1 / -table2: the grids' experiment, the run folders of both
    tables (sweep, score_task, adapt, driver, archives), the driver's output folder and caption command; spectune.adapt
    scores the experiment's test items (T2_ADAPT_<scale> sizes equal the config's) with Table 1's experts."""
    for scale in ("smoke", "gpu", "paper"):
        text = make_n("reproduce-t2-table2", f"SCALE={scale}", "SEEDS=2")  # runs Table 1's runs first
        suffix = "" if scale == "smoke" else f"_{scale}"
        runs1, runs2 = f"runs/t2_table1{suffix}", f"runs/t2_table2{suffix}"
        for stem, runs in (("t2_table1", runs1), ("t2_table2", runs2)):
            experiment = f"{stem}_{scale}"
            conf = yaml.safe_load((REPO_ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text())
            assert f"runs/{conf['experiment_name']}" == runs, (scale, stem)
            assert f"experiment={experiment} +sweep=" in text and "seed=0,1 " in text
            assert f"score_task --experiment {experiment} --runs {runs} " in text
        assert f"--run {runs1}/$model/lora-r16/t2_$dom/seed$seed " in text
        (adapt,) = _words(text, "-m spectune.adapt ")
        assert f"out_dir={runs2}/adapt" in adapt and f"{runs1}/$model/svf-official-mlp/t2_$t/seed$seed" in text
        assert f"cls_expert={runs2}/$model/svf-official-mlp/t2_cls/seed$seed" in text
        sizes = dict(w.split("=", 1) for w in adapt if w.startswith(("task.n_", "eval.max_new_tokens=")))
        conf = yaml.safe_load((REPO_ROOT / "conf" / "experiment" / f"t2_table2_{scale}.yaml").read_text())
        if scale != "paper":  # paper: the hub's official splits, no sizes
            want = {f"task.{k}": "null" if v is None else str(v) for k, v in conf["task"].items()}
            want["eval.max_new_tokens"] = str(conf["eval"]["max_new_tokens"])
            assert sizes == want, (scale, sizes, want)
        for target, (module, stem) in T2_TARGETS.items():
            t_text = text if target == "reproduce-t2-table2" else make_n(target, f"SCALE={scale}", "SEEDS=2")
            runs = runs1 if stem == "t2_table1" else runs2
            args = driver_args(t_text, module)
            assert (args["--runs"], args["--experiment"]) == (runs, f"{stem}_{scale}"), (target, scale)
            assert args["--out"] == ("results/tables/paper" if scale == "paper" else "results/tables")
            assert args["--command"] == f"make {target} SCALE={scale} SEEDS=2"
            assert f"make archive-runs RUNS={runs}\n" in t_text and f"make archive-t2-runs RUNS={runs}\n" in t_text
    assert "runs/t2_table1_gpu" not in make_n("reproduce-t2-table1", "SCALE=smoke", "SEEDS=1")
