"""Every bad option of the training entry point is refused before anything loads, by name, with its fix.

The table walks the composed config (Hydra's compose API) through ``train_and_evaluate`` in-process: validation runs
first, so each case costs milliseconds. Each refused case must raise a ``UserError`` naming the option, leave nothing
in its run folder but a failed ``summary.json``, and load no model. Bounds are checked on both sides: the last
accepted value validates, the first refused one does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from spectune.config import CONF_DIR, validate
from spectune.errors import ConfigError, UserError
from spectune.training.recipe import train_and_evaluate

BASE = ["model=minilm", "task=glue/sst2", "logger=disabled"]

# (overrides, fragment the message must contain)
REFUSED = [
    (["train.lr=0"], "train.lr=0"), (["train.lr=-1"], "train.lr=-1"), (["train.lr=2"], "train.lr=2"),
    (["train.max_length=0"], "train.max_length=0"), (["train.max_length=7"], "train.max_length=7"),
    (["train.warmup_ratio=1.5"], "train.warmup_ratio=1.5"), (["train.warmup_ratio=1.0"], "train.warmup_ratio=1.0"),
    (["train.warmup_ratio=-0.1"], "train.warmup_ratio"), (["train.warmup_steps=-1"], "train.warmup_steps=-1"),
    (["train.warmup_steps=5", "train.warmup_ratio=0.1"], "not both"),
    (["train.save_steps=0"], "train.save_steps=0"), (["train.logging_steps=0"], "train.logging_steps=0"),
    (["train.batch_size=0"], "train.batch_size=0"), (["train.grad_accum=0"], "train.grad_accum=0"),
    (["train.eval_batch_size=0"], "train.eval_batch_size=0"), (["train.epochs=-1"], "train.epochs=-1"),
    (["train.max_steps=0"], "train.max_steps=0"), (["train.max_steps=-2"], "train.max_steps=-2"),
    (["train.epochs=0", "train.max_steps=-1"], "nothing would train"),
    (["train.weight_decay=-0.1"], "train.weight_decay=-0.1"), (["train.adam_beta2=1.0"], "train.adam_beta2=1.0"),
    (["train.adam_beta2=0"], "train.adam_beta2=0"), (["train.max_grad_norm=0"], "train.max_grad_norm=0"),
    (["train.num_threads=0"], "train.num_threads=0"), (["train.save_total_limit=0"], "train.save_total_limit=0"),
    (["train.precision=fp8"], "train.precision='fp8'"), (["train.scheduler=wobbly"], "train.scheduler='wobbly'"),
    (["train.deepspeed=zero4"], "train.deepspeed='zero4'"), (["train.deepspeed=zero3"], "torchrun"),
    (["+train.interrupt_after_steps=3"], "train.interrupt_after_steps is not an option"),
    (["+train.typo_lr=3"], "train.typo_lr is not an option"),
    (["eval.batch_size=0"], "eval.batch_size=0"), (["eval.num_beams=0"], "eval.num_beams=0"),
    (["eval.max_new_tokens=0"], "eval.max_new_tokens=0"), (["eval.protocols=[]"], "eval.protocols"),
    (["eval.protocols=[vibes]"], "eval.protocols"),
    (["task.n_test=0"], "task.n_test=0"), (["task.n_train=0"], "task.n_train=0"),
    (["task.source=ftp"], "task.source='ftp'"), (["task.name=nosuch"], "Unknown task 'nosuch'"),
    (["seed=-1"], "seed=-1"), (["seed=4294967296"], "seed=4294967296"),
    (["run_tag=/elsewhere"], "run_tag='/elsewhere'"), (["run_tag=-../../x"], "run_tag"),
    (["run_tag=-.."], "'..'"), (["experiment_name=a/b"], "experiment_name='a/b'"),
    (["logger.mode=cloud"], "logger.mode='cloud'"),
    (["analysis.rank_every=0"], "analysis.rank_every=0"), (["analysis.tsd_every=0"], "analysis.tsd_every=0"),
    (["method.r=0"], "method.r=0"), (["method.r=-3"], "method.r=-3"), (["method.alpha=0"], "method.alpha=0"),
    (["method.dropout=1.5"], "method.dropout=1.5"), (["method.dropout=-0.1"], "method.dropout=-0.1"),
    (["+method.rank=4"], "no option(s) ['rank']"),
    (["method=lora_dash", "method.s=0"], "method.s=0"), (["method=lora_dash", "method.t=-1"], "method.t=-1"),
    (["method=lora_dash", "method.select=best"], "method.select='best'"),
    (["method=lora_dash", "method.count=epochs"], "method.count='epochs'"),
    (["method=lora_dash", "method.rate_tol=-1"], "method.rate_tol=-1"),
    (["method=plora", "method.momentum=1.0"], "method.momentum=1.0"),
    (["method=plora", "method.momentum=-0.5"], "method.momentum=-0.5"),
    (["method=plora", "method.unload_every=0"], "method.unload_every=0"),
    (["method=plora", "method.prune_keep=0"], "method.prune_keep=0"),
    (["method=plora", "method.moments=forget"], "method.moments='forget'"),
    (["method=full", "analysis.tsd_reference=runs/x"], "update is dense"),
    (["method=svf", "train.weight_decay=0.01"], "train.weight_decay=0.01 with method=svf"),
    (["model=smollm2"], "needs an encoder model"),
    (["train.precision=fp16", "model.dtype=bfloat16"], "mixes half formats"),
    # train.objective=reinforce (Transformer²'s REINFORCE): a task with a reward, one process, no resume, a validation
    # split, no Trainer callbacks, only the options it reads.
    (["train.objective=policy"], "train.objective='policy'"), (["train.rl.iterations=0"], "train.rl.iterations=0"),
    (["train.rl.kl_coef=-0.1"], "train.rl.kl_coef=-0.1"), (["train.rl.sampling=beam"], "train.rl.sampling='beam'"),
    (["train.rl.temperature=0"], "train.rl.temperature=0"), (["train.rl.kl_form=js"], "train.rl.kl_form='js'"),
    (["train.objective=reinforce"], "needs a task with a reward function"),
    (["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "train.deepspeed=zero2"],
     "drop train.deepspeed=zero2"),
    (["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "resume=true"], "cannot resume"),
    (["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "method=lora_dash"], "Trainer callbacks"),
    (["model=smollm2", "task=t2/math", "train.objective=reinforce"], "task.n_valid=0"),
    (["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "train.precision=fp16"], "no fp16"),
    (["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "train.warmup_steps=5"], "not read by"),
    (["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "analysis.rank_every=5"], "Trainer callbacks"),
]

# The last accepted values at each bound: these validate.
ACCEPTED = [
    ["train.warmup_ratio=0.0"], ["train.warmup_ratio=0.99"], ["train.weight_decay=0"], ["train.max_length=8"],
    ["train.max_steps=-1"], ["train.lr=1.0"], ["seed=0"], ["seed=4294967295"], ["method.dropout=0"],
    ["method.dropout=1.0"], ["method=plora", "method.momentum=0.0"], ["method=plora", "method.momentum=0.99"],
    ["method=lora_dash", "method.t=1"], ["task.n_test=1"], ["run_tag=-lr1e-3_b2"], ["train.save_total_limit=null"],
    ["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "method=svf", "train.rl.kl_coef=0.3"],
    ["model=smollm2", "task=t2/arc_easy", "train.objective=reinforce", "method=lora", "method.r=16",
     "method.alpha=32"], ["model=smollm2", "task=t2/math"], ["model=smollm2", "task=t2/gsm8k", "method=svf"],
]


def _compose(overrides: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose("config", overrides=[*BASE, *overrides])


@pytest.mark.parametrize(("overrides", "fragment"), REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_refused_before_anything_loads(overrides: list[str], fragment: str, tmp_path: Path, monkeypatch) -> None:
    import spectune.training.recipe as recipe

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded despite bad input")

    monkeypatch.setattr(recipe, "load_base", no_loading)
    monkeypatch.setattr(recipe, "setup_data", no_loading)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _compose([*overrides, f"runs_root={tmp_path}"])
    run_dir = tmp_path / "cell"
    with pytest.raises(UserError) as info:
        train_and_evaluate(cfg, run_dir)
    assert fragment in str(info.value), str(info.value)
    assert [p.name for p in run_dir.iterdir()] == ["summary.json"], "only the failure record may be left behind"
    record = json.loads((run_dir / "summary.json").read_text())
    assert record["status"] == "failed" and fragment in record["error"]


@pytest.mark.parametrize("overrides", ACCEPTED, ids=[" ".join(o) for o in ACCEPTED])
def test_values_at_the_bounds_are_accepted(overrides: list[str]) -> None:
    validate(_compose(overrides))


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        validate(_compose(["train.lr=0", "eval.batch_size=0", "seed=-1"]))
    assert all(k in str(info.value) for k in ("train.lr=0", "eval.batch_size=0", "seed=-1"))


def test_schedule_that_would_silently_change_the_method_is_refused(tmp_path: Path) -> None:
    """A LoRA-Dash switch after the last step (plain LoRA) or a PLoRA run without an unload is refused pre-load."""
    from spectune.methods import build_method

    with pytest.raises(ConfigError, match="method.t=100 >= the run's 64 optimizer steps"):
        build_method("lora_dash", t=100).check_schedule(64, epochs=2)
    build_method("lora_dash", t=63).check_schedule(64, epochs=2)
    with pytest.raises(ConfigError, match="would never unload"):
        build_method("plora", unload_every=64, unload_at_epoch_end=False).check_schedule(64, epochs=2)
    build_method("plora", unload_every=64, unload_at_epoch_end=True).check_schedule(64, epochs=2)
