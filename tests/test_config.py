"""Every config file composes, names its command, and contradictory or unknown options fail with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spectune.config import CONF_DIR, ConfigError, register_resolvers, scrub_secrets, validate

register_resolvers()

GROUPS = ["model", "method", "task", "train", "eval", "logger", "scale", "experiment"]
# Root configs of other entry points compose on their own and are tested with them (conf/adapt.yaml:
# python -m spectune.adapt, tests/adaptation/test_adapt_cli.py).
ENTRY_CONFIGS = ("adapt.yaml",)
CONFIG_FILES = sorted(p for p in CONF_DIR.rglob("*.yaml") if p.relative_to(CONF_DIR).as_posix() not in ENTRY_CONFIGS)
# Hydra launcher configs (conf/hydra/launcher/) are not run configs: tests/training/test_launchers.py composes them
# into the sbatch files submitit writes and runs the local ones.
RUN_CONFIG_FILES = [p for p in CONFIG_FILES if p.relative_to(CONF_DIR).parts[0] != "hydra"]


def _override_for(path: Path) -> list[str]:
    rel = path.relative_to(CONF_DIR).with_suffix("")
    parts = rel.parts
    if parts == ("config",):
        return []
    group, choice = parts[0], "/".join(parts[1:])
    if group == "sweep":  # a grid of one experiment (conf/sweep/<experiment>/<grid>.yaml), appended to it
        return [f"experiment={parts[1]}", f"+sweep={choice}"]
    overrides = [f"{group}={choice}"]
    # Make the combination coherent: GLUE needs an encoder, commonsense a causal LM.
    if group == "task":
        overrides.append("model=minilm" if choice.startswith("glue") else "model=smollm2")
    if group == "model":
        family = OmegaConf.load(path).family
        overrides.append("task=glue/sst2" if family == "encoder" else "task=commonsense/boolq")
    return overrides


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize("path", RUN_CONFIG_FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_config_composes_and_resolves(path: Path) -> None:
    cfg = compose_cfg(_override_for(path))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["name"] and resolved["task"]["name"] and resolved["method"]["name"]
    validate(cfg)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_config_names_its_command(path: Path) -> None:
    head = "".join(path.read_text().splitlines(keepends=True)[:6])
    assert "python -m spectune" in head or "make " in head or "Run:" in head, f"{path} has no command in its header"


def test_every_group_has_files() -> None:
    for g in GROUPS:
        assert list((CONF_DIR / g).rglob("*.yaml")), f"conf/{g}/ is empty"


def test_paper_scale_takes_papers_settings() -> None:
    glue = compose_cfg(["scale=paper", "model=deberta_v3_base", "task=glue/rte"])
    assert glue.train.lr == pytest.approx(1.2e-3) and glue.train.epochs == 50 and glue.train.max_length == 320
    assert glue.task.n_train is None and glue.task.source == "hub"
    cs = compose_cfg(["scale=paper", "model=llama3_8b", "task=commonsense/all"])
    assert cs.train.lr == pytest.approx(1e-4) and cs.train.batch_size == 16 and cs.train.max_length == 256
    assert compose_cfg(["scale=paper", "model=llama_7b", "task=commonsense/all"]).train.lr == pytest.approx(2e-4)
    assert cs.method.alpha == 2 * cs.method.r


def test_smoke_lr_follows_method() -> None:
    assert compose_cfg(["method=full", "model=smollm2", "task=commonsense/boolq"]).train.lr == pytest.approx(5e-5)
    assert compose_cfg(["method=full"]).train.lr == pytest.approx(1e-4)  # MiniLM's smoke rate
    assert compose_cfg(["method=lora"]).train.lr == pytest.approx(3e-3)
    assert compose_cfg(["method=lora", "train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["method.name=nosuch"], "Unknown method 'nosuch'"),
        (["task.name=nosuch"], "Unknown task 'nosuch'"),
        (["model=smollm2", "task=glue/sst2"], "needs an encoder"),
        (["model=minilm", "task=commonsense/boolq"], "needs a causal LM"),
        (["train.precision=int4"], "train.precision"),
        (["train.deepspeed=zero9"], "train.deepspeed"),
        (["train.epochs=0", "train.max_steps=0"], "nothing would train"),
        (["train.warmup_steps=10", "train.warmup_ratio=0.1"], "not both"),
        (["method.r=0"], "method.r=0"),
        (["logger.mode=sometimes"], "logger.mode"),
        (["eval.protocols=[vibes]"], "eval.protocols"),
        (["train.precision=fp16", "model.dtype=bfloat16"], "mixes half formats"),
        (["method=full", "analysis.tsd_reference=runs/x"], "update is dense"),
        (["analysis.tsd_reference=runs/x", "train.deepspeed=zero3"], "partitioned"),
        (["model=minilm", "task=plora/mmlu"], "trains a causal LM"),
        (["model=smollm2", "task=plora/mmlu_gsm8k", "task.source=hub"], r"task\.source=embedded"),
        (["model=smollm2", "task=plora/gsm8k", "scale=paper"], r"task\.source=embedded"),
        (["model=smollm2", "task=plora/gsm8k", "scale=paper", "task.source=embedded"], r"protocols=\[likelihood\]"),
    ],
)
def test_contradictory_options_fail_with_fix(overrides: list[str], fragment: str) -> None:
    cfg = compose_cfg(overrides)
    with pytest.raises(ConfigError, match=fragment):
        validate(cfg)


def test_unknown_group_choice_is_rejected_by_hydra() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):
        compose_cfg(["method=nosuch"])


def test_secrets_are_scrubbed() -> None:
    cfg = {"logger": {"api_key": "abc", "project": "p"}, "hub_token": "hf_x", "nested": [{"password": "pw"}]}
    clean = scrub_secrets(cfg)
    assert clean == {"logger": {"api_key": "***", "project": "p"}, "hub_token": "***", "nested": [{"password": "***"}]}
