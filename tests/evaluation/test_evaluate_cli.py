"""``python -m spectune.evaluate``: lm-eval on the embedded SmolLM2 with a PEFT adapter, offline, from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_evaluate_cli_with_adapter_writes_metrics_and_never_overwrites(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from spectune.models import load_model_and_tokenizer

    base, _ = load_model_and_tokenizer("smollm2", "causal_lm")
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    out = tmp_path / "metrics.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "spectune.evaluate", "--model", "smollm2", "--adapter", str(tmp_path / "adapter"),
           "--tasks", "spectune_arc_easy", "--limit", "4", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert 0.0 <= res["metrics"]["spectune_arc_easy"]["acc"] <= 1.0 and res["limit"] == 4
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "never overwritten" in again.stderr
