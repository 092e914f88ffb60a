"""experiments.claims on the committed runs: each comparison pairs the two cells' seeds from their eval files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.claims import COMPARISONS, build

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (REPO / "results" / "runs" / "plora").exists(), reason="no committed PLoRA runs")
def test_plora_row_is_the_seedwise_gsm8k_difference() -> None:
    (c,) = [c for c in COMPARISONS if c.ours.endswith("plora-r8-m0.0/mmlu_gsm8k")]

    def bpb(cell: str, k: int) -> float:
        path = REPO / c.runs / cell / f"seed{k}" / "eval_results.json"
        return json.loads(path.read_text())["gsm8k"]["bits_per_byte"]

    diffs = [bpb(c.ours, k) - bpb(c.theirs, k) for k in range(3)]
    (row,) = build(REPO, [c])
    assert row[3] == "3" and row[4] == ", ".join(f"{d:+.3f}" for d in diffs)
    mean = sum(diffs) / 3
    half = 4.302652729911275 * (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5  # t_{0.975, 2}
    # lower bits per byte is the paper's direction: the claim is supported when the whole interval is below 0
    expected = "supported" if mean + half < 0 else "contradicted" if mean - half > 0 else "inconclusive"
    assert row[5] == f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]" and row[6] == expected
