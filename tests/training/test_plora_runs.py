"""PeriodicLoRA through the real CLI: 2-rank ZeRO-2/3 runs under torchrun, and a resume that must rebuild the merged
stages in W (the Trainer restores the adapter, not W) to reproduce the uninterrupted run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.training.helpers import events, run_train, summary
from tests.training.test_deepspeed import _torchrun

FAST = ["model=minilm", "task=glue/sst2", "task.n_train=64", "task.n_test=16", "method=plora", "method.r=2",
        "method.unload_every=4", "train.batch_size=8", "train.logging_steps=1", "train.num_threads=1"]
LABEL = "plora-r2-m0.0"


@pytest.mark.slow
# ZeRO-3 (sharded parameters, gathered for the edit) in the default suite; ZeRO-2 in `make test-extended`:
# its fp32-master handling is covered in the default suite by tests/methods/test_plora_deepspeed.py[2] and the
# ZeRO-2 training path by test_deepspeed.py::test_two_rank_deepspeed_run[zero2].
@pytest.mark.parametrize("stage", [pytest.param("zero2", marks=pytest.mark.extended), "zero3"])
def test_two_rank_plora_unloads_agree_across_ranks(tmp_path: Path, stage: str) -> None:
    pytest.importorskip("deepspeed")
    run_train([*FAST, "train.batch_size=4", "train.max_steps=10", "train.save_steps=100", f"train.deepspeed={stage}",
               "export_merged=false", "analysis.rank_every=5"], tmp_path, launcher=_torchrun(), timeout=900)
    run_dir = tmp_path / f"single/minilm/{LABEL}/sst2/seed0"
    assert summary(run_dir)["status"] == "finished"
    rank0 = json.loads((run_dir / "method_record.rank0.json").read_text())["stages"]
    rank1 = json.loads((run_dir / "method_record.rank1.json").read_text())["stages"]
    # 64 examples / (2 ranks x 4) = 8 steps an epoch: unloads at 4 and 8 (interval; 8 is also the epoch end)
    assert [s["step"] for s in rank0] == [4, 8]
    assert rank0 == rank1  # same merged norms: both ranks held the same A, B and merged the same update
    assert all(s["merged_norm"] > 0 for s in rank0)
    assert [e["step"] for e in events(run_dir, "plora_unload")] == [4, 8]
    # The accumulated update, read on gathered weights: stage 1 + live at step 5, stages 1-2 + live at step 10.
    ranks = {e["step"]: e["mean_numerical_rank"] for e in events(run_dir, "update_rank")}
    assert ranks == {5: 4.0, 10: 6.0}, ranks
    assert json.loads((run_dir / "update_rank.json").read_text())["mean_numerical_rank"] == 6.0


def _merged(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "merged/model.safetensors"))


@pytest.mark.slow
def test_resumed_plora_run_reproduces_the_uninterrupted_one(tmp_path: Path) -> None:
    args = [*FAST, "train.max_steps=12", "train.save_steps=6", "keep_checkpoints=true", "export_merged=true"]
    run_train(args, tmp_path / "a")
    full = tmp_path / f"a/single/minilm/{LABEL}/sst2/seed0"
    assert [e["step"] for e in events(full, "plora_unload")] == [4, 8]
    # The same run cut after its step-6 checkpoint: everything later removed, as if killed there.
    cut = tmp_path / f"b/single/minilm/{LABEL}/sst2/seed0"
    shutil.copytree(full, cut)
    for p in ("summary.json", "eval_results.json", "adapter", "merged", "checkpoints/checkpoint-12",
              "method_record.json"):
        target = cut / p
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    lines = [ln for ln in (cut / "metrics.jsonl").read_text().splitlines() if json.loads(ln).get("step") is None
             or json.loads(ln)["step"] <= 6]
    (cut / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    run_train([*args, "resume=true"], tmp_path / "b")
    assert events(cut, "start")[-1]["resume"] is True
    assert [e["step"] for e in events(cut, "plora_unload")] == [4, 8]  # 4 from the first life, 8 after the resume
    a, b = _merged(full), _merged(cut)
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    # Stage 1 (merged at step 4, before the checkpoint) moved W by far more than this; a resume that forgot it
    # would be off by that much.
    stage1 = json.loads((full / "method_record.json").read_text())["stages"][0]["merged_norm"]
    assert stage1 > 0.1 and worst < 1e-4, (worst, stage1)
    assert summary(cut)["metrics"] == summary(full)["metrics"]
