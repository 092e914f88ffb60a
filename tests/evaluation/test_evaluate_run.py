"""``python -m spectune.evaluate --run`` scores what the run trained, for every method (issue: it used PEFT's loader).

One small real run per registered method (SmolLM2 cut to 2 blocks, GSM8K carve-out, scored by gold-answer bits per
byte, a continuous metric that any dropped term moves); ``evaluate --run`` must reproduce the run's own
``eval_results.json``. For the methods whose saved state PEFT's loader does not fully know (LoRA-Dash's dash term,
PeriodicLoRA's merged stages) the test also shows that a PEFT-only load scores differently, so it would catch a
regression to that loader.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spectune.methods import REGISTRY, Method

COMMON = ["model=smollm2", "model.num_layers=2", "task=plora/gsm8k", "task.n_train=16", "task.n_test=4",
          "train.epochs=1", "train.batch_size=8", "train.max_length=192", "train.lr=3e-3", "train.logging_steps=1",
          "train.save_steps=1000", "export_merged=false", "eval.batch_size=4", "logger=disabled", "train.num_threads=2"]
# One row per method: its overrides (2 optimizer steps: LoRA-Dash switches after step 1, PLoRA unloads after step 1
# and trains its new stage in step 2).
RUNS = {
    "full": ["method=full", "train.lr=1e-4"],
    "lora": ["method=lora", "method.r=4"],
    "lora_dash": ["method=lora_dash", "method.r=4", "method.s=4", "method.t=1"],
    "plora": ["method=plora", "method.r=4", "method.unload_every=1"],
    "svf": ["method=svf", "train.lr=2e-2"],
}


def test_every_registered_method_has_a_run_row() -> None:
    assert sorted(RUNS) == sorted(REGISTRY)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One finished run folder per method, trained in-process by the recipe (the CLI's path minus Hydra's start)."""
    from hydra import compose, initialize_config_dir

    from spectune.config import CONF_DIR
    from spectune.training.recipe import train_and_evaluate

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, overrides in RUNS.items():
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            cfg = compose("config", overrides=[*COMMON, *overrides, f"runs_root={root}"])
        out[name] = root / name
        assert train_and_evaluate(cfg, out[name])["status"] == "finished"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_evaluate_run_reproduces_the_runs_own_scores(name: str, runs: dict[str, Path], tmp_path: Path) -> None:
    from spectune.evaluate import main

    run_dir = runs[name]
    out = tmp_path / "rescored.json"
    assert main(["--run", str(run_dir), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    recorded = json.loads((run_dir / "eval_results.json").read_text())
    assert res["recorded"] == recorded
    assert res["metrics"]["gsm8k"]["bits_per_byte"] == pytest.approx(recorded["gsm8k"]["bits_per_byte"], abs=1e-6)
    assert res["max_abs_diff"] < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lora_dash", "plora"])
def test_a_peft_only_load_would_score_differently(name: str, runs: dict[str, Path]) -> None:
    """The defect the method loader fixes: PEFT's loader drops the dash term / the merged stages."""
    from spectune.evaluation.suite import evaluate_splits
    from spectune.training.artifacts import load_base, run_config
    from spectune.training.recipe import setup_data

    run_dir = runs[name]
    cfg = run_config(run_dir)
    base, tok = load_base(cfg)
    peft_only = Method.load_adapter(None, base, run_dir / "adapter").eval()  # the base class's loader = PEFT's
    metrics = evaluate_splits(peft_only, tok, setup_data(cfg), protocols=["likelihood"], batch_size=6,
                              max_length=256)
    recorded = json.loads((run_dir / "eval_results.json").read_text())
    print(f"{name}: GSM8K bits/byte through the method {recorded['gsm8k']['bits_per_byte']:.6f}, "
          f"through PEFT's loader alone {metrics['gsm8k']['bits_per_byte']:.6f}")
    assert abs(metrics["gsm8k"]["bits_per_byte"] - recorded["gsm8k"]["bits_per_byte"]) > 1e-4
