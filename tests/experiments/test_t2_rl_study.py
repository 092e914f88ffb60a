"""experiments.t2_rl_study on the committed GPU runs: rows by label + run tag, differences paired by seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.runs import collect_runs
from experiments.t2_rl_study import TASK, build

RUNS = Path(__file__).resolve().parents[2] / "results" / "runs" / "t2_rl"


@pytest.mark.skipif(not RUNS.exists(), reason="results/runs/t2_rl not in this checkout")
def test_differences_are_paired_by_seed_from_the_run_files() -> None:
    _, rows, _, diffs = build(collect_runs(RUNS))
    assert [r[0] for r in rows] == ["base", "lora-r16-norm", "svf-official-mlp-norm"]

    def bpb(path: Path) -> float:
        return json.loads((path / "eval_results.json").read_text())[TASK]["bits_per_byte"]

    svf = RUNS / "t2_rl_arc_easy" / "smollm2" / "svf-official-mlp" / TASK
    base = RUNS / "smollm2" / "base" / TASK
    expected = [bpb(svf / f"seed{k}-norm") - bpb(base / f"seed{k}") for k in range(3)]
    assert diffs["svf-official-mlp-norm"]["bits_per_byte"].diffs == pytest.approx(expected)
