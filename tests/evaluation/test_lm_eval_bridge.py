"""lm-eval on the shipped offline tasks: in-memory model, local path + PEFT adapter, and agreement with
spectune's own log-likelihood scorer."""

from __future__ import annotations

import math

import pytest
import torch

from spectune.data.records import Record
from spectune.evaluation.likelihood import score_multiple_choice
from spectune.evaluation.lm_eval_bridge import local_task_names, local_tasks_dir, run_lm_eval, task_manager

REQUIRED = {"spectune_arc_easy", "spectune_boolq", "spectune_piqa", "spectune_sst2"}


def test_every_local_task_loads_offline():
    from lm_eval.tasks import get_task_dict

    names = local_task_names()
    assert REQUIRED <= set(names)
    assert all((local_tasks_dir() / f"{n}.yaml").exists() for n in names)
    tasks = get_task_dict(names, task_manager())
    for name in names:
        task = tasks[name]
        docs = task.validation_docs()
        assert len(docs) > 100, name
        doc = docs[0]
        choices = task.doc_to_choice(doc)
        text, target = task.doc_to_text(doc), task.doc_to_target(doc)
        if isinstance(text, int):  # WinoGrande: the gold is a context index, the target a shared continuation
            assert 0 <= text < len(choices) and isinstance(target, str)
        else:
            assert isinstance(target, int) and 0 <= target < len(choices), name


def test_in_memory_model_on_a_local_task(smollm2_cut):
    model, tok = smollm2_cut
    out = run_lm_eval(model, tok, tasks=["spectune_arc_easy"], limit=8, batch_size=8, log_samples=True)
    metrics = out["metrics"]["spectune_arc_easy"]
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["acc_norm"] <= 1.0
    # lm-eval's log-likelihoods equal spectune's batched scorer on the same requests.
    samples = sorted(out["samples"]["spectune_arc_easy"], key=lambda s: s["doc_id"])
    records = [Record(task="arc_e", id=str(s["doc_id"]), context=f"Question: {s['doc']['question']}\nAnswer:",
                      choices=tuple(" " + c for c in s["doc"]["choices"]["text"]), label=s["target"]) for s in samples]
    ours = score_multiple_choice(model, tok, records, batch_size=8)
    for sample, lls in zip(samples, ours.loglikelihoods):
        theirs = [float(resp[0][0]) for resp in sample["resps"]]
        assert lls == pytest.approx(theirs, abs=1e-3)
    assert ours.accuracy == pytest.approx(metrics["acc"])
    assert ours.acc_norm == pytest.approx(metrics["acc_norm"])


@pytest.fixture(scope="module")
def base_and_adapter(smollm2_cut, tmp_path_factory):
    """The 2-layer cut saved as a folder, and a LoRA adapter (random B, so it changes the outputs) for it."""
    import copy

    from peft import LoraConfig, get_peft_model

    model, tok = smollm2_cut
    root = tmp_path_factory.mktemp("lm_eval_bridge")
    base_dir, adapter_dir = root / "base", root / "adapter"
    model.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(model), config)
    peft_model.save_pretrained(adapter_dir)
    return base_dir, adapter_dir


def test_adapter_path_run(smollm2_cut, base_and_adapter):
    model, tok = smollm2_cut
    base_dir, adapter_dir = base_and_adapter
    kwargs = dict(tasks=["spectune_sst2"], limit=8, batch_size=8, log_samples=True)
    from_path = run_lm_eval(str(base_dir), adapter_path=adapter_dir, device="cpu", **kwargs)
    acc = from_path["metrics"]["spectune_sst2"]["acc"]
    assert 0.0 <= acc <= 1.0
    in_memory = run_lm_eval(model, tok, adapter_path=adapter_dir, **kwargs)
    plain = run_lm_eval(model, tok, **kwargs)

    def lls(out):
        return [float(r[0][0]) for s in sorted(out["samples"]["spectune_sst2"], key=lambda s: s["doc_id"])
                for r in s["resps"]]

    assert lls(from_path) == pytest.approx(lls(in_memory), abs=1e-3)  # the same adapter, loaded either way
    assert max(abs(a - b) for a, b in zip(lls(in_memory), lls(plain))) > 1e-3  # and it was applied
    assert not any("lora" in name for name, _ in model.named_modules())  # unloaded from the caller's model
    assert not math.isnan(plain["metrics"]["spectune_sst2"]["acc"])
