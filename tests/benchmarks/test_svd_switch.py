"""benchmarks/svd_switch.py on the CPU: every stage is timed and each SVD is checked against float64."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "svd_switch", Path(__file__).resolve().parents[2] / "benchmarks" / "svd_switch.py")
svd_switch = importlib.util.module_from_spec(spec)
sys.modules["svd_switch"] = svd_switch
spec.loader.exec_module(svd_switch)


def test_stages_are_timed_and_the_svd_matches_float64(tmp_path: Path) -> None:
    out = tmp_path / "svd.json"
    assert svd_switch.main(["--device", "cpu", "--shapes", "48x32:3,32x80", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {tuple(r["shape"]): r for r in result["rows"]}
    assert set(rows) == {(48, 32), (32, 80)} and rows[(48, 32)]["count"] == 3 and result["complete"]
    for r in rows.values():
        svd = r["svd"]["default"]
        # fp32 SVD of a bf16 weight against the float64 SVD of the same bf16 values
        assert svd["sigma_max_rel_err"] < 1e-5 and svd["recon_rel_err"] < 1e-5
        assert r["cold_get_s"] > 0 and r["warm_get_s"] > 0 and r["cache_file_mib"] > 0
    batched = rows[(48, 32)]["svd_batched"]  # 3 matrices of one shape: one batched call, as exact as one
    assert batched["count"] == 3 and batched["seconds"] > 0 and batched["sigma_max_rel_err"] < 1e-5
    assert "svd_batched" not in rows[(32, 80)]
    assert result["model_total"]["svd_default_batched_s"] == pytest.approx(
        batched["seconds"] + rows[(32, 80)]["svd"]["default"]["seconds"])
    expected = sum(r["hash_s"] * r["count"] for r in rows.values())
    assert result["model_total"]["hash_s"] == pytest.approx(expected)


def test_shapes_parse() -> None:
    assert svd_switch.parse_shapes("llama3-8b") == svd_switch.LLAMA3_8B
    assert svd_switch.parse_shapes("10x20:4,5x6") == {(10, 20): 4, (5, 6): 1}
