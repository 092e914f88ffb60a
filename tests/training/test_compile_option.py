"""``train.compile`` / ``compile_mode`` / ``optimizer``: TrainingArguments' ``torch_compile``, ``torch_compile_mode``
and ``optim`` from the recipe; the combinations it refuses name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from spectune.config import CONF_DIR, ConfigError, validate
from spectune.training.recipe import training_arguments


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize(("flag", "want"), [([], False), (["train.compile=true"], True)])
def test_training_arguments_torch_compile(flag: list[str], want: bool, tmp_path: Path) -> None:
    cfg = compose_cfg(["model=smollm2", "task=commonsense/boolq", "method=lora", *flag])
    validate(cfg)
    args = training_arguments(cfg, tmp_path)
    assert args.torch_compile is want
    if want:
        assert args.torch_compile_backend == "inductor"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["train.compile=true", "train.deepspeed=zero2"], r"train\.compile=true with train\.deepspeed=zero2"),
        (["train.compile=true", "method=lora_dash", "method.count=forward_calls"], r"method\.count=optimizer_steps"),
        (["train.compile=true", "train.objective=reinforce", "method=svf", "task=t2/arc_easy"],
         "drop train.compile"),
        (["train.compile=maybe"], "train.compile"),
        (["train.compile_mode=reduce-overhead"], r"needs train\.compile=true"),
        (["train.compile=true", "train.compile_mode=fastest"], "train.compile_mode"),
        (["train.optimizer=sgd"], "train.optimizer"),
        (["train.optimizer=adamw_torch_fused", "train.objective=reinforce", "method=svf", "task=t2/arc_easy"],
         "drop train.optimizer"),
    ],
)
def test_compile_refusals_name_the_fix(overrides: list[str], fragment: str) -> None:
    cfg = compose_cfg(["model=smollm2", "task=commonsense/boolq", *overrides])
    with pytest.raises(ConfigError, match=fragment):
        validate(cfg)


def test_training_arguments_compile_mode_and_optimizer(tmp_path: Path) -> None:
    cfg = compose_cfg(["model=smollm2", "task=commonsense/boolq", "method=lora"])
    validate(cfg)
    args = training_arguments(cfg, tmp_path)
    assert args.optim == "adamw_torch" and args.torch_compile_mode is None
    cfg = compose_cfg(["model=smollm2", "task=commonsense/boolq", "method=lora", "train.compile=true",
                       "train.compile_mode=reduce-overhead", "train.optimizer=adamw_torch_fused"])
    validate(cfg)
    args = training_arguments(cfg, tmp_path)
    assert args.optim == "adamw_torch_fused" and args.torch_compile_mode == "reduce-overhead"
