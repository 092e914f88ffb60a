"""experiments.claims on the committed runs: each comparison pairs the two cells' seeds from their eval files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.claims import COMPARISONS, build

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (REPO / "results" / "runs" / "plora").exists(), reason="no committed PLoRA runs")
def test_plora_row_is_the_seedwise_gsm8k_difference() -> None:
    (c,) = [c for c in COMPARISONS if c.ours.endswith("plora-r8-m0.0/mmlu_gsm8k") and c.runs == "results/runs/plora"]

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
    from scipy.stats import ttest_1samp

    # a family of one row: Holm leaves its p-value as it is
    p = float(ttest_1samp(diffs, 0.0).pvalue)
    assert row[7] == f"{p:.3f} ({p:.2f})"


@pytest.mark.skipif(not (REPO / "results" / "runs" / "table2_glue_gpu").exists(), reason="no committed GPU GLUE runs")
def test_glue_mean_row_averages_the_three_tasks_per_seed_and_ablation_rows_pair_suffixes() -> None:
    (glue,) = [c for c in COMPARISONS if c.runs.endswith("table2_glue_gpu") and c.ours.startswith("minilm/dash-r2")
               and len(c.tasks) == 3]

    def acc(root: str, cell: str, suffix: str, k: int) -> float:
        res = json.loads((REPO / root / cell / f"seed{k}{suffix}" / "eval_results.json").read_text())
        (task,) = [t for t in res if t != "primary"]
        return 100 * res[task]["accuracy"]

    diffs = [sum(acc(glue.runs, f"minilm/dash-r2-s8/{t}", "", k) - acc(glue.runs, f"minilm/lora-r2/{t}", "", k)
                 for t in ("sst2", "rte", "mrpc")) / 3 for k in range(3)]
    (row,) = build(REPO, [glue])
    assert row[3] == "3" and row[4] == ", ".join(f"{d:+.3f}" for d in diffs)

    (abl,) = [c for c in COMPARISONS if c.runs.endswith("dash_ablation_gpu") and c.theirs_suffix == "-t30-random"]
    cell = "minilm/dash-r8-s8/sst2"
    diffs = [acc(abl.runs, cell, "-t30-rate", k) - acc(abl.runs, cell, "-t30-random", k) for k in range(3)]
    (row,) = build(REPO, [abl])
    assert row[2] == "`dash-r8-s8-t30-rate` − `dash-r8-s8-t30-random`"
    assert row[4] == ", ".join(f"{d:+.3f}" for d in diffs)


def test_plot_writes_a_png_and_skips_comparisons_without_runs(tmp_path: Path) -> None:
    from dataclasses import replace

    from experiments.claims import plot

    empty = replace(COMPARISONS[0], runs="no/such/runs")
    with pytest.raises(ValueError):  # nothing to plot at all is an error, not an empty figure
        plot(REPO, tmp_path / "none.png", [empty])
    present = [c for c in COMPARISONS if (REPO / c.runs).exists()][:2]
    if not present:
        pytest.skip("no committed runs")
    out = plot(REPO, tmp_path / "claims.png", [empty, *present])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "claims.tmp.png").exists()


@pytest.mark.skipif(not (REPO / "results" / "runs" / "t2_table1_gpu").exists(), reason="no committed T² GPU runs")
def test_svf_vs_lora_avg_row_is_the_seedwise_mean_over_the_three_tasks() -> None:
    (c,) = [c for c in COMPARISONS if c.runs.endswith("t2_table1_gpu") and len(c.tasks) == 3
            and "exact match" in c.metric]

    def em(label: str, task: str, k: int) -> float:
        res = json.loads((REPO / c.runs / "smollm2" / label / f"t2_{task}" / f"seed{k}" / "eval_results.json")
                         .read_text())
        return 100 * res[f"t2_{task}"]["exact_match"]

    tasks = ("gsm8k", "mbpp", "arc_easy")
    diffs = [sum(em("svf-official-mlp", t, k) - em("lora-r16", t, k) for t in tasks) / 3 for k in range(3)]
    (row,) = build(REPO, [c])
    assert row[2] == "`svf-official-mlp` − `lora-r16`" and row[3] == "3"
    assert row[4] == ", ".join(f"{d:+.3f}" for d in diffs)
