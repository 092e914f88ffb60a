"""benchmarks/step_time.py on CPU with a tiny LLaMA-shaped model: every row trains through the recipe's set-up, the
ratios to the floor and to PEFT's LoRA are written, and a compiled row runs (dynamo, backend "eager": quick)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_time.py"
TINY = ["--model", "llama-shape", "--layers", "1", "--hidden", "64", "--intermediate", "128", "--heads", "4",
        "--vocab", "256", "--batch", "2", "--seq", "16", "--warmup", "1", "--steps", "2", "--dash-s", "4",
        "--plora-stage", "4", "--device", "cpu", "--lr", "1e-3", "--threads", "1"]


@pytest.fixture(scope="module")
def step_time():
    spec = importlib.util.spec_from_file_location("step_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(step_time, tmp_path_factory):
    out = tmp_path_factory.mktemp("step_time") / "tiny.json"
    step_time.main([*TINY, "--modes", "eager", "--profile-unload", "--profile-steps", "--out", str(out)])
    return json.loads(out.read_text()), out


def test_json_keys(result):
    data, out = result
    assert set(data) == {"environment", "config", "methods", "markdown"}
    env = data["environment"]
    for key in ("device", "device_type", "torch", "transformers", "peft", "python", "git", "command", "time"):
        assert key in env, key
    assert env["device_type"] == "cpu" and "benchmarks/step_time.py" in env["command"]
    assert "commit" in env["git"]
    cfg = data["config"]
    assert cfg["precision"] == "fp32" and cfg["model_shape"]["hidden"] == 64 and cfg["model_shape"]["layers"] == 1
    assert list(data["methods"]) == ["floor", "peft_lora", "full", "lora", "lora_dash", "plora", "svf"]
    for name, rec in data["methods"].items():
        for key in ("ms_per_step", "ms_per_step_all", "peak_mib", "ratio_vs_floor", "ratio_vs_peft_lora",
                    "peak_vs_floor_mib", "first_step_s", "trainable_params", "total_params", "losses", "trained",
                    "tokens_per_s", "mode"):
            assert key in rec, (name, key)
        assert rec["peak_mib"] is None and rec["mode"] == "eager"  # CPU: no CUDA allocator to read
        assert len(rec["ms_per_step_all"]) == 2 and rec["ms_per_step"] > 0
    rows = data["methods"]
    assert rows["floor"]["ratio_vs_floor"] == 1.0 and rows["peft_lora"]["ratio_vs_peft_lora"] == 1.0
    assert rows["lora"]["optimizer"] == {"class": "AdamW", "fused": False, "foreach": None}  # the recipe's default
    assert rows["lora_dash"]["switch_ms"] > 0 and rows["lora_dash"]["switched_layers"] == 7
    plora = rows["plora"]
    assert plora["unload_ms"] > 0 and plora["unload_ms_first"] > 0 and plora["plora_stage_steps"] == 4
    # --profile-unload: a third unload under torch.profiler, its operators by self time (the merge's add among them)
    ops = {r["op"] for r in plora["unload_profile"]}
    assert "aten::add_" in ops and all(r["self_cpu_ms"] >= 0 for r in plora["unload_profile"])
    assert plora["ms_per_step_amortised"] == pytest.approx(plora["ms_per_step"] + plora["unload_ms"] / 4, abs=2e-3)
    assert plora["ratio_vs_floor"] == pytest.approx(plora["ms_per_step_amortised"] / rows["floor"]["ms_per_step"],
                                                    abs=2e-3)
    assert out.with_suffix(".md").read_text().strip() == data["markdown"].strip()
    assert "| lora_dash | eager |" in data["markdown"] and "| svf | eager |" in data["markdown"]
    # --profile-steps: one step of every row profiled (CPU: operators' self time); the categories sum to the total
    for name, rec in rows.items():
        prof = rec["step_profile"]
        assert prof["kind"] == "operators, self CPU time" and prof["total_ms"] > 0, name
        assert sum(prof["by_category_ms"].values()) == pytest.approx(prof["total_ms"], abs=0.01), name
        assert prof["by_category_ms"].get("gemm", 0) > 0, name  # the model's GEMMs (aten::mm / addmm)
    assert "One profiled step per row" in data["markdown"]


@pytest.mark.parametrize(("name", "category"), [
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "gemm"),
    ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT", "gemm"),
    ("void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<Flash_bwd_kernel_traits>", "attention"),
    ("triton_poi_fused_native_dropout_3", "dropout / RNG"),
    ("keep_bits_kernel", "dropout / RNG"),
    ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_1", "triton (fused pointwise, reductions)"),
    ("Memcpy DtoD (Device -> Device)", "copies, fills"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>", "other"),
])
def test_kernel_category(step_time, name, category):
    assert step_time.kernel_category(name) == category


def test_every_row_trained(result):
    rows = result[0]["methods"]
    for name, rec in rows.items():
        assert rec["trained"], name
        assert all(math.isfinite(x) for x in rec["losses"]), name
        if name != "floor":
            assert rec["params_changed"] == rec["param_tensors"], name  # every trainable tensor moved
    assert rows["floor"]["trainable_params"] == 0
    full, lora = rows["full"], rows["lora"]
    assert full["trainable_params"] == full["total_params"]
    # r (d_in + d_out) per matrix: q, k, v, o are 64x64; gate, up 64->128; down 128->64
    assert lora["trainable_params"] == 4 * 8 * (64 + 64) + 3 * 8 * (64 + 128) == rows["peft_lora"]["trainable_params"]
    assert rows["lora_dash"]["trainable_params"] == lora["trainable_params"] + 7 * 4  # one δ of s=4 per matrix
    assert rows["lora_dash"]["dash_delta_abs_sum"] > 0  # the dash term trained after the switch
    assert rows["plora"]["unload_merged_norm"] > 0 and rows["plora"]["unload_layers"] == 7
    assert len(rows["plora"]["losses"]) == 1 + 2 + 2  # warm-up, timed, one step after each of two unloads
    assert rows["svf"]["trainable_params"] == 64 + 64 + 64  # one z of min(d_out, d_in) per MLP matrix


def test_compiled_row(step_time):
    """The recipe's train.compile path (TrainingArguments torch_compile → accelerate's torch.compile) trains."""
    data = step_time.main([*TINY, "--rows", "lora", "--modes", "compiled", "--compile-backend", "eager"])
    rec = data["methods"]["lora+compiled"]
    assert rec["mode"] == "compiled" and rec["torch_compiled"] and rec["trained"] and rec["ratio_vs_floor"] is None


def test_recipe_overrides_reach_every_row(step_time):
    """--set train.KEY=VALUE composes into each row's recipe config: train.optimizer=adamw_torch_fused gives the
    Trainer's fused AdamW, recorded in the row and the table's title; keys the other options own are refused."""
    data = step_time.main([*TINY, "--rows", "floor,lora", "--modes", "eager", "--set",
                           "train.optimizer=adamw_torch_fused"])
    rec = data["methods"]["lora"]
    assert rec["optimizer"]["class"] == "AdamW" and rec["optimizer"]["fused"] and rec["trained"]
    assert data["config"]["train_set"] == ["train.optimizer=adamw_torch_fused"]
    assert "recipe overrides train.optimizer=adamw_torch_fused" in data["markdown"]
    with pytest.raises(SystemExit):
        step_time.parse_args([*TINY, "--set", "train.compile=true"])
    with pytest.raises(SystemExit):
        step_time.parse_args([*TINY, "--set", "method.r=4"])


def test_failing_row_is_recorded_and_the_others_run(step_time, monkeypatch):
    """A row that raises (e.g. a recipe override the GPU stack rejects) is kept as its error, marked in the table and
    left out of the ratios; the rows after it still run and the floor's ratios still come out."""
    real = step_time.run_row

    def run_row(row, *args, **kwargs):
        if row == "peft_lora":
            raise RuntimeError("CUDAGraphs | boom")
        return real(row, *args, **kwargs)

    monkeypatch.setattr(step_time, "run_row", run_row)
    data = step_time.main([*TINY, "--rows", "floor,peft_lora,lora", "--modes", "eager"])
    rows = data["methods"]
    assert rows["peft_lora"] == {"row": "peft_lora", "mode": "eager", "error": "RuntimeError: CUDAGraphs | boom"}
    assert rows["lora"]["trained"] and rows["lora"]["ratio_vs_floor"] > 0
    assert rows["lora"]["ratio_vs_peft_lora"] is None
    assert "| peft_lora | eager | — |" in data["markdown"] and "**failed**: RuntimeError: CUDAGraphs / boom" in \
        data["markdown"]
