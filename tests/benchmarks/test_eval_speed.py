"""benchmarks/eval_speed.py on CPU with a 1-layer SmolLM2 cut: every row is there and the fast scorer agrees."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_speed.py"
TINY = ["--device", "cpu", "--layers", "1", "--items", "6", "--reference-items", "3", "--gen-items", "2",
        "--gen-batch", "2", "--gen-new-tokens", "3", "--gen-beams", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def eval_speed():
    spec = importlib.util.spec_from_file_location("eval_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(eval_speed, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_speed") / "tiny.json"
    eval_speed.main([*TINY, "--out", str(out)])
    return json.loads(out.read_text()), out


def test_json_and_markdown(result):
    data, out = result
    assert set(data) == {"environment", "config", "likelihood", "generation", "total_seconds", "markdown"}
    env = data["environment"]
    for key in ("device", "device_type", "torch", "transformers", "lm_eval", "python", "git", "command", "time"):
        assert key in env, key
    assert env["device_type"] == "cpu" and "benchmarks/eval_speed.py" in env["command"] and "commit" in env["git"]
    assert out.with_suffix(".md").read_text().strip() == data["markdown"].strip()
    names = [r["name"] for r in data["likelihood"]]
    assert names[:8] == ["fast", "fast fp32", "fast tf32 + re-check", "fast tf32, no re-check", "fast bf16 + re-check",
                         "fast bf16, no re-check", "reference", "batched (before)"]
    assert names[8] == "lm-eval"  # lm_eval is in the test environment; elsewhere the row says it is not available
    assert "| re-checked items |" in data["markdown"]
    assert "fast bf16, no re-check: against fast fp32" in data["markdown"]


def test_fast_scorer_agrees_with_reference(result):
    rows = {r["name"]: r for r in result[0]["likelihood"]}
    for name in ("fast", "fast fp32", "batched (before)", "lm-eval"):
        r = rows[name]
        assert r["agreement_pct"] == 100.0 and r["agreement_norm_pct"] == 100.0, name
        assert r["max_abs_dlogprob"] < 1e-3 and r["items_per_s"] > 0, name
    assert rows["fast"]["items"] == 6 and rows["reference"]["items"] == 3
    stats = rows["fast"]["stats"]
    assert stats["n_shared_requests"] == stats["n_requests"] and stats["precision"] == "model dtype (float32)"


def test_low_precision_rows(result):
    """tf32 and bf16 rows, each with its re-check count; the rows without re-check carry the bound check."""
    rows = {r["name"]: r for r in result[0]["likelihood"]}
    for precision, margin in (("tf32", 0.03), ("bf16", 0.1)):
        checked, alone = rows[f"fast {precision} + re-check"], rows[f"fast {precision}, no re-check"]
        assert checked["stats"]["recheck_margin"] == margin and alone["stats"]["recheck_margin"] == 0
        assert alone["stats"]["n_rechecked_items"] == 0 and checked["agreement_pct"] == 100.0
        bound = alone["bound_check"]
        assert bound["choices"] == 24 and bound["recheck_margin"] == margin and bound["bound_violations"] >= 0
        assert bound["items_flagged"] == checked["stats"]["n_rechecked_items"]
    assert rows["fast tf32, no re-check"]["bound_check"]["max_abs_dlogprob_vs_fast_fp32"] < 1e-3  # TF32: none on CPU


def test_generation_rows(result):
    gen = {r["name"]: r for r in result[0]["generation"]}
    assert set(gen) == {"generation loop", "generation batched"}  # the bf16 row is CUDA only
    assert gen["generation batched"]["text_agreement_pct"] == 100.0
    assert gen["generation batched"]["answer_agreement_pct"] == 100.0


def test_lm_eval_missing_is_recorded(eval_speed, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_lm_eval(name, *args, **kwargs):
        if name.startswith("lm_eval"):
            raise ImportError("No module named 'lm_eval'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lm_eval)
    r = eval_speed.lm_eval_row(None, None, [], {}, eval_speed.parse_args(TINY))
    assert r["what"] == "lm-eval not available" and "ImportError" in r["error"]


def test_items_beyond_the_task_are_refused_not_repeated() -> None:
    """Repeated items would share contexts in the fast scorer and overstate its speed (the f3040cb GPU run's flaw)."""
    import pytest

    from benchmarks.eval_speed import load_records

    assert len(load_records("arc_c", 299)) == 299
    with pytest.raises(SystemExit, match="repeated items would share"):
        load_records("arc_c", 300)
