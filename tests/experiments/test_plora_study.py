"""The PLoRA study table and figure from synthetic run folders: rows, learning-ability ratios, never-overwrite."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from experiments.plora_study import main

TARGETS = ["q_proj", "v_proj"]
ENV = {"git": {"commit": "abc", "dirty": False}, "device": {"type": "cuda", "name": "NVIDIA H200", "count": 1}}


def _run(root: Path, method: str, r: int | None, momentum: float | None, mmlu: float, bpb: float,
         losses: list[float], rank: float, stages: int = 0, scale: str = "smoke") -> None:
    label = {"full": "full", "lora": f"lora-r{r}", "plora": f"plora-r{r}-m{momentum}"}[method]
    d = root / "smollm2" / label / "mmlu_gsm8k" / "seed0"
    d.mkdir(parents=True)
    m = {"name": method, "label": label}
    if method != "full":
        m |= {"r": r, "target_modules": TARGETS}
    if method == "plora":
        m["momentum"] = momentum
    cfg = {"method": m, "model": {"name": "smollm2", "dtype": "float32"},
           "train": {"epochs": 2, "batch_size": 8, "max_length": 384, "adam_beta2": 0.99, "scheduler": "constant",
                     "lr": 5e-4, "precision": "fp32"}, "task": {"name": "mmlu_gsm8k"}, "seed": 0}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    results = {"mmlu": {"accuracy": mmlu, "acc_norm": mmlu}, "gsm8k": {"bits_per_byte": bpb}}
    (d / "eval_results.json").write_text(json.dumps(results))
    (d / "summary.json").write_text(json.dumps({"status": "finished", "model": "smollm2", "method": method,
                                                "task": "mmlu_gsm8k", "seed": 0, "rank": r, "scale": scale,
                                                "commit": "abc", "runtime_s": 60.0, "metrics": results}))
    (d / "environment.json").write_text(json.dumps(ENV))
    events = [{"event": "train", "step": 2 * (i + 1), "loss": v} for i, v in enumerate(losses)]
    events += [{"event": "update_rank", "step": 8, "mean_numerical_rank": rank, "mean_effective_rank": rank / 2,
                "mean_stable_rank": 1.5, "total_frobenius_norm": 0.5}]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    (d / "method_record.json").write_text(json.dumps({"stages": [{"stage": k + 1} for k in range(stages)]}))


def _base(root: Path, mmlu: float, bpb: float) -> None:
    d = root / "base" / "seed0"
    d.mkdir(parents=True)
    res = {"mmlu": {"accuracy": mmlu, "acc_norm": mmlu}, "gsm8k": {"bits_per_byte": bpb}}
    (d / "eval_results.json").write_text(json.dumps(res))
    (d / "summary.json").write_text(json.dumps({"status": "finished", "model": "smollm2", "method": "base",
                                                "task": "mmlu_gsm8k", "seed": 0, "commit": "abc", "metrics": res}))
    (d / "environment.json").write_text(json.dumps(ENV))


def test_study_rows_and_learning_ability_ratios(tmp_path):
    runs = tmp_path / "runs"
    _base(runs, mmlu=0.30, bpb=0.80)
    _run(runs, "full", None, None, 0.36, 0.60, [2.0, 1.8, 1.6, 1.0], rank=500)
    lora_losses, plora_losses = [2.0, 1.9, 1.8, 1.7, 1.6, 1.6], [2.0, 1.8, 1.6, 1.5, 1.2, 1.0]
    _run(runs, "lora", 8, None, 0.32, 0.75, lora_losses, rank=8)
    _run(runs, "plora", 8, 0.0, 0.34, 0.70, plora_losses, rank=24, stages=2)
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "out"), "--stage", "4",
                 "--command", "test"]) == 0
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "out/tables/plora_smoke.csv").open())}
    assert {k for k, r in rows.items() if r["n_seeds"] != "0"} == {"base model (untrained)", "FT", "LoRA r=8",
                                                                  "PeriodicLoRA r=8 (plain unload)"}
    # the other rows of the plora_smoke grids have no run folder: shown (n_seeds 0, "not run"), not dropped
    assert {k for k, r in rows.items() if r["n_seeds"] == "0"} == {
        "LoRA r=1", "PeriodicLoRA r=1 (plain unload)", "PeriodicLoRA r=1 momentum 0.9", "PeriodicLoRA r=8 momentum 0.9"}
    plora = rows["PeriodicLoRA r=8 (plain unload)"]
    # Loss drop: first logged loss minus the mean over the last stage (steps > 12 - 4: the last two logs).
    drop_lora, drop_plora = 2.0 - (1.6 + 1.6) / 2, 2.0 - (1.2 + 1.0) / 2
    assert float(plora["loss_drop"]) == pytest.approx(drop_plora)
    assert float(plora["la_loss"]) == pytest.approx(drop_plora / drop_lora)
    assert float(plora["la_mmlu"]) == pytest.approx((34 - 30) / (32 - 30))
    assert float(plora["la_gsm8k"]) == pytest.approx((0.80 - 0.70) / (0.80 - 0.75))
    assert float(plora["numerical_rank"]) == 24 and float(plora["stages"]) == 2
    assert rows["LoRA r=8"]["la_loss"] == ""  # ratios are PLoRA's only
    md = (tmp_path / "out/tables/plora_smoke.md").read_text()
    assert "not a reproduction" in md and "Command: `test`" in md
    fig = json.loads((tmp_path / "out/figures/plora_rank_smoke.json").read_text())
    assert set(fig["curves"]) == {"FT", "LoRA r=8", "PeriodicLoRA r=8 (plain unload)"}
    assert fig["commits"] == ["abc"] and fig["devices"] == ["1 × NVIDIA H200 (cuda)"]
    assert "abc (all 4 run folders, clean work tree)" in md and "LoRA/PeriodicLoRA 0.0005, FT 0.0005" in md
    assert (tmp_path / "out/figures/plora_rank_smoke.png").stat().st_size > 10_000


def test_report_without_runs_says_what_to_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "make reproduce-plora" in capsys.readouterr().err


def test_no_ability_ratio_when_loras_own_gain_is_not_positive(tmp_path):
    runs = tmp_path / "runs"
    _base(runs, mmlu=0.30, bpb=0.60)
    _run(runs, "lora", 1, None, 0.28, 0.65, [2.0, 1.5], rank=1)  # LoRA lost MMLU and GSM8K points
    _run(runs, "plora", 1, 0.0, 0.27, 0.70, [2.0, 1.6], rank=4, stages=3)
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "out"), "--stage", "2",
                 "--assume-commit", "feedbeef"]) == 0
    plora = {r["method"]: r for r in csv.DictReader((tmp_path / "out/tables/plora_smoke.csv").open())}[
        "PeriodicLoRA r=1 (plain unload)"]
    assert plora["la_mmlu"] == "" and plora["la_gsm8k"] == ""  # a ratio of two losses is no "learning ability"
    assert float(plora["la_loss"]) == pytest.approx(0.4 / 0.5)
    assert "abc" in (tmp_path / "out/tables/plora_smoke.md").read_text()


def test_a_later_life_supersedes_what_earlier_lives_logged_from_its_first_step():
    import tempfile

    from experiments.plora_study import _events

    lines = [{"event": "start", "step": 0}, *({"event": "train", "step": s, "loss": 10.0 + s} for s in (1, 2, 3, 4)),
             {"event": "start", "step": 0, "resume": True},  # resumed from checkpoint 2: re-logs 3, 4, 5
             *({"event": "train", "step": s, "loss": float(s)} for s in (3, 4, 5)),
             {"event": "start", "step": 0, "resume": True},  # no checkpoint: from scratch
             *({"event": "train", "step": s, "loss": -float(s)} for s in (1, 2, 3, 4, 5, 6))]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
        assert [(e["step"], e["loss"]) for e in _events(Path(d), "train")] == [(s, -float(s)) for s in range(1, 7)]
        (Path(d) / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in lines[:10]) + "\n")
        assert [(e["step"], e["loss"]) for e in _events(Path(d), "train")] == [(1, 11.0), (2, 12.0), (3, 3.0),
                                                                             (4, 4.0), (5, 5.0)]


def test_gpu_scale_report_is_named_and_worded_for_its_scale(tmp_path):
    """`make reproduce-plora SCALE=gpu`'s report: plora_gpu.md / .csv, plora_rank_gpu.png / .json; heading, caveat
    and figure caption name the GPU scale (no smoke wording); the plora_gpu grids' rows without a finished run read
    "not run" / "no finished run" and the failed folder is listed."""
    runs = tmp_path / "runs" / "plora_gpu"
    _base(runs, mmlu=0.30, bpb=0.80)
    _run(runs, "lora", 8, None, 0.32, 0.75, [2.0, 1.8, 1.6], rank=8, scale="gpu")
    _run(runs, "plora", 8, 0.9, 0.34, 0.70, [2.0, 1.7, 1.5], rank=20, stages=1, scale="gpu")
    failed = runs / "smollm2" / "plora-r1-m0.9" / "mmlu_gsm8k" / "seed0"
    failed.mkdir(parents=True)
    (failed / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "plora", "r": 1, "momentum": 0.9},
                                                        "model": {"name": "smollm2"}, "seed": 0}))
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "method": "plora", "seed": 0, "scale": "gpu",
                                                     "error": "RuntimeError: CUDA out of memory"}))
    command = "make reproduce-plora SCALE=gpu SEEDS=1"
    assert main(["report", "--experiment", "plora_gpu", "--runs", str(runs), "--out", str(tmp_path / "out"),
                 "--scale", "gpu", "--command", command]) == 0
    assert sorted(p.name for p in (tmp_path / "out/tables").iterdir()) == ["plora_gpu.csv", "plora_gpu.md"]
    assert sorted(p.name for p in (tmp_path / "out/figures").iterdir()) == ["plora_rank_gpu.json",
                                                                          "plora_rank_gpu.png"]
    md = (tmp_path / "out/tables/plora_gpu.md").read_text()
    assert md.startswith("# PeriodicLoRA study at GPU scale: FT vs LoRA vs PLoRA (plain, momentum) on "
                         "SmolLM2-135M-Instruct\n\n**GPU scale, not a reproduction of the paper**")
    assert "smoke" not in md.lower() and f"Command: `{command}`" in md
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["FT"].count("| not run ") == 9 and lines["LoRA r=1"].count("| not run ") == 9
    assert lines["PeriodicLoRA r=1 momentum 0.9"].count("| no finished run ") == 9
    assert "- smollm2/plora-r1-m0.9/mmlu_gsm8k/seed0: failed" in md
    assert "CUDA out of memory" in md.split("## Run folders with problems")[1]
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "out/tables/plora_gpu.csv").open())}
    assert set(rows) == {"base model (untrained)", "FT", "LoRA r=1", "LoRA r=8", "PeriodicLoRA r=1 (plain unload)",
                         "PeriodicLoRA r=1 momentum 0.9", "PeriodicLoRA r=8 (plain unload)",
                         "PeriodicLoRA r=8 momentum 0.9"}
    assert rows["PeriodicLoRA r=8 momentum 0.9"]["n_seeds"] == "1" and rows["FT"]["n_seeds"] == "0"
    fig = json.loads((tmp_path / "out/figures/plora_rank_gpu.json").read_text())
    assert fig["caption"].startswith("PeriodicLoRA GPU-scale study, SmolLM2-135M on MMLU+GSM8K carve-outs")
