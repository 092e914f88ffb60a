"""experiments.dash_ablations on fake LoRA-Dash / LoRA run folders (one factor at a time around the centre)."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments import dash_ablations

COMMIT = "abc1234def"
CENTRE = {"s": 8, "t": 8, "select": "rate"}
T_VALUES = (4, 8, 16, 32)  # no t = 1: at lr 0 (warm-up's first step) every rate is 0 and the switch refuses
S_VALUES = (2, 8, 32)
SELECTS = ("rate", "random", "top_sigma", "bottom_sigma")
SEEDS = (0, 1, 2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _acc(s: int, t: int, select: str, seed: int) -> float:
    return random.Random(f"{s}/{t}/{select}/{seed}").randint(100, 240) / 256


def _lora_acc(seed: int) -> float:
    return random.Random(f"lora/{seed}").randint(100, 240) / 256


def write_run(root: Path, *, method: str, seed: int, s: int | None = None, t: int | None = None,
              select: str | None = None, status: str = "finished", accuracy: float | None = None,
              runtime_s: float = 30.0, dirty: bool = False, scale: str = "smoke") -> Path:
    """A MiniLM SST-2 run folder as `make dash-ablations` lays it out (t and select in the folder name)."""
    label = "lora-r8" if method == "lora" else f"dash-r8-s{s}"
    tag = "" if method == "lora" else f"-t{t}-{select}"
    folder = root / "minilm" / label / "sst2" / f"seed{seed}{tag}"
    folder.mkdir(parents=True)
    method_cfg: dict[str, Any] = {"name": method, "label": label, "r": 8, "alpha": 16, "dropout": 0.05, "lr": 3e-3}
    if method == "lora_dash":
        method_cfg.update(s=s, t=t, select=select, count="optimizer_steps")
    config = {"model": {"name": "minilm"}, "method": method_cfg,
              "task": {"name": "sst2", "family": "glue", "n_train": 512, "n_test": 256},
              "train": {"lr": 3e-3, "epochs": 2, "max_steps": -1, "batch_size": 16, "max_length": 128},
              "scale_name": scale, "seed": seed}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "environment.json").write_text(json.dumps({"git": {"commit": COMMIT, "dirty": dirty},
                                                        "device": {"type": "cpu", "name": "x86_64", "count": 2},
                                                        "torch_threads": 2}))
    (folder / "data_indices.json").write_text(json.dumps({
        "task": "sst2", "source": "embedded", "carve_out": True, "train_indices": {"sst2": list(range(512))},
        "test_indices": {"sst2": list(range(512, 768))}, "n_train": 512, "n_test": 256}))
    if status == "failed":
        summary = {"status": "failed", "model": "minilm", "method": method, "task": "sst2", "seed": seed,
                   "scale": scale, "error": "ValueError: bad s"}
    else:
        (folder / "eval_results.json").write_text(json.dumps({"sst2": {"accuracy": accuracy, "n": 256}}))
        summary = {"status": "finished", "model": "minilm", "method": method, "task": "sst2", "seed": seed,
                   "rank": 8, "scale": scale, "commit": COMMIT, "runtime_s": runtime_s, "train_steps": 64,
                   "metrics": {"sst2": {"accuracy": accuracy}}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _settings() -> set[tuple[int, int, str]]:
    """Every (s, t, select) the sweeps run: each factor's values with the other two at the centre."""
    cells = {(CENTRE["s"], t, CENTRE["select"]) for t in T_VALUES}
    cells |= {(s, CENTRE["t"], CENTRE["select"]) for s in S_VALUES}
    cells |= {(CENTRE["s"], CENTRE["t"], sel) for sel in SELECTS}
    return cells


@pytest.fixture
def ablation_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / "dash_ablation"
    for s, t, select in sorted(_settings()):
        for seed in SEEDS:
            write_run(root, method="lora_dash", seed=seed, s=s, t=t, select=select, accuracy=_acc(s, t, select, seed),
                      runtime_s=20.0 + seed)
    for seed in SEEDS:
        write_run(root, method="lora", seed=seed, accuracy=_lora_acc(seed), runtime_s=15.0)
    write_run(root, method="lora_dash", seed=0, s=64, t=8, select="rate", status="failed")  # a failed point
    write_run(root, method="lora_dash", seed=0, s=4, t=4, select="random", accuracy=0.99)  # off every axis
    return root


@pytest.fixture
def output(ablation_runs: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "figures"
    rc = dash_ablations.main(["--runs", str(ablation_runs), "--out", str(out), "--command", "make dash-ablations"])
    assert rc == 0
    return out, json.loads((out / "dash_ablation.json").read_text())


def _expected(values: list[float]) -> tuple[float, float]:
    pct = [100 * v for v in values]
    return statistics.mean(pct), statistics.stdev(pct)


def test_points_are_means_over_seeds(output) -> None:
    _, data = output
    axes = {"t": [(CENTRE["s"], t, CENTRE["select"]) for t in T_VALUES],
            "s": [(s, CENTRE["t"], CENTRE["select"]) for s in S_VALUES],
            "select": [(CENTRE["s"], CENTRE["t"], sel) for sel in SELECTS]}
    for factor, cells in axes.items():
        points = data["factors"][factor]
        assert [p["value"] for p in points] == [dict(zip(("s", "t", "select"), c))[factor] for c in cells]
        for point, (s, t, select) in zip(points, cells, strict=True):
            mean, std = _expected([_acc(s, t, select, seed) for seed in SEEDS])
            assert point["mean"] == pytest.approx(mean, rel=1e-12)
            assert point["std"] == pytest.approx(std, rel=1e-12)
            assert point["n"] == 3 and point["seeds"] == list(SEEDS)
            assert point["values"] == [100 * _acc(s, t, select, seed) for seed in SEEDS]
    centre_means = {p["mean"] for f in axes for p in data["factors"][f] if p["value"] == CENTRE[f]}
    assert len(centre_means) == 1  # the centre run is one point of every factor
    mean, std = _expected([_lora_acc(seed) for seed in SEEDS])
    assert data["baseline"]["mean"] == pytest.approx(mean, rel=1e-12)
    assert data["baseline"]["std"] == pytest.approx(std, rel=1e-12)


def test_problems_name_failed_and_off_axis_runs(output) -> None:
    _, data = output
    problems = "\n".join(data["problems"])
    assert "dash-r64-s8" not in problems  # there is no such label: the folder is dash-r8-s64
    assert "dash-r8-s64/sst2/seed0-t8-rate: failed (ValueError: bad s)" in problems
    assert "dash-r8-s4/sst2/seed0-t4-random" in problems and "more than one factor" in problems
    assert all(p["value"] != 64 for p in data["factors"]["s"])
    assert all(99.0 not in p["values"] for f in data["factors"].values() for p in f)


def test_figures_and_provenance(output) -> None:
    out, data = output
    for factor in ("t", "s", "select"):
        png = out / f"dash_ablation_{factor}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert data["figures"] == ["dash_ablation_t.png", "dash_ablation_s.png", "dash_ablation_select.png"]
    prov = data["provenance"]
    assert prov["command"] == "make dash-ablations"
    assert prov["seeds"] == list(SEEDS) and prov["scale"] == ["smoke"] and prov["model"] == ["minilm"]
    assert prov["commits"] == [COMMIT] and prov["hardware"] == ["cpu (x86_64, 2 logical cores), 2 torch threads"]
    assert prov["centre"] == CENTRE and prov["optimizer_steps"] == [64]
    assert prov["data_carve_out"] == {"sst2": ["train 512, test 256"]}
    used = len(_settings()) * len(SEEDS) + len(SEEDS)  # the off-axis and failed runs are not used
    assert prov["runs"] == used
    assert prov["runtime_s_sum"] == pytest.approx(len(_settings()) * sum(20.0 + s for s in SEEDS) + 3 * 15.0)
    assert prov["wall_s"] is None
    assert data["caption"].startswith("SMOKE SCALE, not a reproduction.") and "make dash-ablations" in data["caption"]
    assert data["ranks"] == [8]


def test_single_seed_has_no_std_and_other_centre(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for t in (2, 4):
        write_run(root, method="lora_dash", seed=0, s=4, t=t, select="random", accuracy=t / 10, dirty=True)
    out = tmp_path / "fig"
    args = ["--runs", str(root), "--out", str(out), "--centre-s", "4", "--centre-t", "4", "--centre-select", "random",
            "--started", "0"]
    assert dash_ablations.main(args) == 3  # dirty runs are refused
    assert not out.exists()
    assert dash_ablations.main([*args, "--allow-mixed-commits"]) == 0
    data = json.loads((out / "dash_ablation.json").read_text())
    assert [(p["value"], p["mean"], p["std"], p["n"]) for p in data["factors"]["t"]] == [
        (2, pytest.approx(20.0), None, 1), (4, pytest.approx(40.0), None, 1)]
    assert [p["value"] for p in data["factors"]["s"]] == [4] and [p["value"] for p in data["factors"]["select"]] == [
        "random"]
    assert data["baseline"] is None
    assert "(dirty)" in data["caption"] and data["provenance"]["wall_s"] > 0
    assert data["provenance"]["mixed_commits"] is True
    assert data["provenance"]["run_commits"] == {
        f"minilm/dash-r8-s4/sst2/seed0-t{t}-random": f"{COMMIT} (dirty)" for t in (2, 4)}
    assert (out / "dash_ablation_select.png").exists()


def test_nothing_to_plot(tmp_path: Path) -> None:
    assert dash_ablations.main(["--runs", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    root = tmp_path / "runs"
    write_run(root, method="lora", seed=0, accuracy=0.5)
    assert dash_ablations.main(["--runs", str(root), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_gpu_scale_figures_are_named_and_captioned_for_their_scale(tmp_path: Path) -> None:
    """`make dash-ablations SCALE=gpu`'s driver call (experiment dash_ablation_gpu): dash_ablation_gpu_<factor>.png
    and dash_ablation_gpu.json; caption and title name the GPU scale (no smoke wording); the grid values without a
    finished run are named (figure and problems), not silently dropped."""
    root = tmp_path / "runs" / "dash_ablation_gpu"
    for seed in (0, 1):
        write_run(root, method="lora_dash", seed=seed, s=8, t=15, select="rate", accuracy=(200 + seed) / 256,
                  scale="gpu")
    write_run(root, method="lora_dash", seed=0, s=8, t=60, select="rate", status="failed", scale="gpu")
    write_run(root, method="lora", seed=0, accuracy=0.75, scale="gpu")
    out = tmp_path / "figures"
    command = "make dash-ablations SCALE=gpu ABLATION_SEEDS=2"
    assert dash_ablations.main(["--experiment", "dash_ablation_gpu", "--runs", str(root), "--out", str(out),
                                "--command", command]) == 0
    # only t has a point (t = 15; the centre t = 30 has no run): the s and select figures have nothing to plot
    assert sorted(p.name for p in out.iterdir()) == ["dash_ablation_gpu.json", "dash_ablation_gpu_t.png"]
    data = json.loads((out / "dash_ablation_gpu.json").read_text())
    assert data["caption"].startswith("GPU SCALE, not a reproduction. scale gpu;") and command in data["caption"]
    assert "smoke" not in data["caption"].lower() and data["provenance"]["scale"] == ["gpu"]
    (point,) = data["factors"]["t"]
    mean, std = _expected([200 / 256, 201 / 256])
    assert (point["value"], point["n"]) == (15, 2)
    assert point["mean"] == pytest.approx(mean) and point["std"] == pytest.approx(std)
    assert data["baseline"]["mean"] == pytest.approx(75.0)
    problems = data["problems"]
    assert "minilm/dash-r8-s8/sst2/seed0-t60-rate: failed (ValueError: bad s)" in problems
    assert [p for p in problems if p.startswith("t=")] == [f"t={t}: no finished run with accuracy; not plotted"
                                                          for t in (30, 60, 120)]
    assert "s=2: no finished run with accuracy; not plotted" in problems
    assert "select=bottom_sigma: no finished run with accuracy; not plotted" in problems
