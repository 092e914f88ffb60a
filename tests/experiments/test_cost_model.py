"""experiments.cost_model: its arithmetic on hand-made numbers, and the table from the committed measurements."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments import cost_model as cm

TINY = cm.Shape(layers=2, hidden=4, intermediate=8, heads=2, kv_heads=1, vocab=10)


def _meas(**kw) -> cm.Measurement:
    base = {"method": "lora", "device": "GPU", "shape": TINY, "tokens": 100, "ms_per_step": 50.0,
            "static_mib": 10.0, "peak_mib": 30.0, "source": "x.json"}
    return cm.Measurement(**{**base, **kw})


def _cell(**kw) -> cm.Cell:
    base = {"experiment": "e", "model": "tiny", "method": "lora", "label": "lora-r2", "task": "rte", "n_train": 1000,
            "epochs": 3.0, "batch": 10, "grad_accum": 2, "max_length": 50, "model_dtype": "bfloat16",
            "targets": ("q_proj", "v_proj"), "rank": 2, "objective": "next_token"}
    return cm.Cell(**{**base, **kw})


def test_shape_counts() -> None:
    # kv width = 4 * 1 / 2 = 2: q 4x4, k 2x4, v 2x4, o 4x4, gate/up 8x4, down 4x8 -> 16+8+8+16+32+32+32 = 144
    assert sum(o * i for o, i in TINY.layer_matrices().values()) == 144
    assert TINY.matmul_params_per_token() == 2 * 144 + 4 * 10
    assert TINY.total_params() == 2 * 144 + 2 * 4 * 10
    assert TINY.activation_width() == 2 * 12
    enc = cm.Shape(1, 4, 8, 2, 2, 10, gated_mlp=False, lm_head=False)
    assert enc.matmul_params_per_token() == 16 * 4 + 32 + 32 and enc.total_params() == 128 + 40


def test_trainable_params_per_method() -> None:
    lora = _cell()
    assert cm.trainable_params(lora, TINY) == 2 * 2 * ((4 + 4) + (2 + 4))  # layers * r * (d_out + d_in) summed
    assert cm.trainable_params(_cell(method="svf", targets=("up_proj", "down_proj")), TINY) == 2 * (4 + 4)
    assert cm.trainable_params(_cell(method="full"), TINY) == TINY.total_params()
    enc = cm.Shape(1, 4, 8, 2, 2, 10, gated_mlp=False, lm_head=False)
    assert cm.trainable_params(_cell(targets=("query_proj", "intermediate.dense")), enc) == 2 * ((4 + 4) + (8 + 4))


def test_cell_cost_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    target = cm.Shape(layers=4, hidden=4, intermediate=8, heads=2, kv_heads=1, vocab=10)
    monkeypatch.setitem(cm.SHAPES, "tiny", target)
    cost = cm.cell_cost(_cell(), {"lora": _meas()})
    assert cost.steps == math.ceil(1000 / 20) * 3 == 150
    assert cost.tokens_per_step == 10 * 2 * 50
    ratio = target.matmul_params_per_token() / TINY.matmul_params_per_token()  # (4*144+40) / (2*144+40)
    assert cost.s_per_step == pytest.approx(0.050 * ratio * 1000 / 100)
    assert cost.gpu_hours == pytest.approx(150 * cost.s_per_step / 3600)
    # static: bf16 weights + 16 bytes per adapter parameter; activations: 20 MiB per 100 tokens of width 24,
    # scaled to the micro-batch (10 x 50 tokens) and width 48
    static = target.total_params() * 2 + cm.trainable_params(_cell(), target) * 16
    act = 20 * cm.MIB / (100 * 24) * 500 * 48
    assert cost.peak_gib == pytest.approx((static + act) / cm.GIB)
    assert cost.note == ""
    # full fine-tuning counts weight, gradient and AdamW's two states in the model's dtype
    full = cm.cell_cost(_cell(method="full", label="full"), {"full": _meas(method="full")})
    assert full.peak_gib == pytest.approx((target.total_params() * 2 * 4 + act) / cm.GIB)
    # fractional epochs: ceil(steps per epoch * epochs)
    assert cm.cell_cost(_cell(epochs=0.5), {"lora": _meas()}).steps == 25


def test_reinforce_and_unknowns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cm.SHAPES, "tiny", TINY)
    rl = cm.cell_cost(_cell(objective="reinforce", rl_iterations=7, rl_prompts=3, rl_new_tokens=30), {"lora": _meas()})
    assert rl.steps == 7 and rl.tokens_per_step == 3 * (50 + 30) and "lower bound" in rl.note
    assert "no step-time measurement" in cm.cell_cost(_cell(method="svf"), {"lora": _meas()}).note
    assert "size of nosuch unknown" in cm.cell_cost(_cell(task="nosuch", n_train=None), {"lora": _meas()}).note
    monkeypatch.setattr(cm, "GPU_GIB", 1e-9)
    assert "ZeRO-3" in cm.cell_cost(_cell(), {"lora": _meas()}).note


def test_measurements_newest_per_method(tmp_path: Path) -> None:
    def write(name: str, when: str, ms: float) -> None:
        shape = {"layers": 2, "hidden": 4, "intermediate": 8, "heads": 2, "kv_heads": 1, "vocab": 10}
        data = {"environment": {"device": "H", "time": when}, "config": {"model_shape": shape, "batch": 2, "seq": 5},
                "methods": {"lora": {"ms_per_step": ms, "allocated_before_timed_mib": 1, "peak_mib": 2}}}
        (tmp_path / name).write_text(json.dumps(data))

    write("step_time_a.json", "2026-01-02T00:00:00", 5.0)
    write("step_time_b.json", "2026-01-01T00:00:00", 9.0)
    got = cm.load_measurements(tmp_path)["lora"]
    assert got.ms_per_step == 5.0 and got.tokens == 10 and got.shape == TINY and got.source == "step_time_a.json"
    with pytest.raises(FileNotFoundError, match="benchmarks/step_time.py"):
        cm.load_measurements(tmp_path / "empty")


def test_committed_measurements_give_every_method() -> None:
    got = cm.load_measurements()
    assert {"full", "lora", "lora_dash", "plora", "svf"} <= set(got)
    for m in got.values():
        assert m.ms_per_step > 0 and m.peak_mib > m.static_mib > 0, m


def test_table_from_the_repo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cm.main(["--experiments", "plora_paper", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "### plora_paper (7 cells × 2 seeds)" in out and "| **total** |" in out
    rows = [line for line in out.splitlines() if line.startswith("| llama_7b |")]
    assert len(rows) == 7 and all("–" not in r.split("|")[7] for r in rows)
