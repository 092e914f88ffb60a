"""The types and ranges of every run option: one validation pass over a composed config, before anything loads.

Hydra composes the config; :func:`check` validates it against these pydantic models and raises
:class:`~spectune.errors.ConfigError` listing *every* offending option with its value, the rule it breaks and the
fix, rather than the first one found. The method's own options are checked by its spec dataclass
(:mod:`spectune.methods.registry`), the cross-option rules (model family vs task, DeepSpeed vs analyses) by
:func:`spectune.config.validate`. Options that no code reads do not exist here (``extra="forbid"``), so a typo or a
dead key added with ``+`` is refused by name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spectune.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9_.=,+\-]*$"  # one path component: no "/", no ".." (checked below), no spaces


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class RLOptions(_Strict):
    """``train.rl``: the REINFORCE objective's options (read only with ``train.objective=reinforce``)."""

    iterations: int = Field(ge=1)
    batch_prompts: int = Field(ge=1)
    sampling: Literal["greedy", "sample"]
    temperature: float = Field(gt=0.0, le=10.0)
    max_new_tokens: int = Field(ge=1)
    kl_coef: float = Field(ge=0.0)
    kl_form: Literal["paper", "official"]
    eval_every: int = Field(ge=1)
    select_start: bool
    reward_norm: bool = False
    reward_clip: float | None = Field(default=None, ge=0.0)


class TrainOptions(_Strict):
    lr: float = Field(gt=0, le=1.0)
    epochs: float | None = Field(default=None, ge=0)
    max_steps: int | None = Field(default=None, ge=-1)
    batch_size: int = Field(ge=1)
    grad_accum: int = Field(ge=1)
    eval_batch_size: int = Field(ge=1)
    warmup_steps: int = Field(ge=0)
    warmup_ratio: float = Field(ge=0.0, lt=1.0)
    scheduler: Literal["linear", "constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "polynomial",
                       "inverse_sqrt"]
    weight_decay: float = Field(ge=0.0)
    adam_beta2: float = Field(gt=0.0, lt=1.0)
    max_grad_norm: float = Field(gt=0.0)
    max_length: int = Field(ge=8)
    precision: Literal["fp32", "bf16", "fp16"]
    train_on_inputs: bool
    logging_steps: int = Field(ge=1)
    save_steps: int = Field(ge=1)
    save_total_limit: int | None = Field(default=None, ge=1)
    deepspeed: Literal["zero2", "zero3"] | None = None
    num_threads: int | None = Field(default=None, ge=1)
    objective: Literal["next_token", "reinforce"] = "next_token"
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = None
    optimizer: Literal["adamw_torch", "adamw_torch_fused"] = "adamw_torch"
    count_tokens: bool = False
    rl: RLOptions

    @model_validator(mode="after")
    def _length(self) -> TrainOptions:
        if (self.max_steps is None or self.max_steps <= 0) and not self.epochs:
            raise ValueError("set train.epochs > 0 or train.max_steps > 0; both are off, so nothing would train")
        if self.max_steps == 0:
            raise ValueError("train.max_steps=0 trains nothing; use a positive number, or -1/null for train.epochs")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("set either train.warmup_steps or train.warmup_ratio, not both")
        if self.compile_mode is not None and not self.compile:
            raise ValueError(f"train.compile_mode={self.compile_mode} needs train.compile=true (nothing is compiled "
                             "otherwise); set train.compile=true or drop train.compile_mode")
        if self.optimizer != "adamw_torch" and self.objective == "reinforce":
            raise ValueError(f"train.optimizer={self.optimizer} sets the HF Trainer's AdamW; train.objective=reinforce "
                             "steps the official Adam itself (spectune.training.reinforce); drop train.optimizer")
        if self.compile and self.deepspeed:
            raise ValueError(f"train.compile=true with train.deepspeed={self.deepspeed} is not supported (not tested; "
                             "ZeRO-3 partitions the LoRA factors the fused forward reads); drop one of them")
        if self.compile and self.objective == "reinforce":
            raise ValueError("train.compile=true compiles the HF Trainer's model; train.objective=reinforce does not "
                             "use it (generation-heavy loop); drop train.compile")
        return self


class EvalOptions(_Strict):
    protocols: list[Literal["likelihood", "generation"]] = Field(min_length=1)
    batch_size: int = Field(ge=1)
    num_beams: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)


class TaskOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # task.paper and family-specific keys
    name: str
    family: str
    source: Literal["embedded", "hub", "local"]
    path: str | None = None
    n_train: int | None = Field(default=None, ge=1)
    n_valid: int | None = Field(default=None, ge=0)  # family t2 (validation split); ignored by the others
    n_test: int | None = Field(default=None, ge=1)


class ModelOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # paper settings, smoke learning rates, target-module sets
    name: str
    name_or_path: str
    family: Literal["causal_lm", "encoder"]
    dtype: Literal["float32", "bfloat16", "float16"]
    num_layers: int | None = Field(default=None, ge=1)
    revision: str | None = None


class AnalysisOptions(_Strict):
    tsd_reference: str | None = None
    tsd_every: int = Field(ge=1)
    rank_every: int | None = Field(default=None, ge=1)


class LoggerOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # credentials given on the command line (never written anywhere)
    mode: Literal["online", "offline", "disabled"]
    project: str = Field(min_length=1)
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # the groups below, method (its spec checks it), hydra
    seed: int = Field(ge=0, lt=2**32)
    resume: bool
    skip_finished: bool
    experiment_name: str = Field(min_length=1, pattern=NAME_PATTERN)
    runs_root: str = Field(min_length=1)
    run_tag: str = Field(pattern=NAME_PATTERN)
    keep_checkpoints: bool
    export_merged: bool
    train: TrainOptions
    eval: EvalOptions
    task: TaskOptions
    model: ModelOptions
    analysis: AnalysisOptions
    logger: LoggerOptions

    @model_validator(mode="after")
    def _names(self) -> RunOptions:
        for key in ("experiment_name", "run_tag"):
            if ".." in getattr(self, key):
                raise ValueError(f"{key} may not contain '..': run folders stay under runs_root/<experiment>")
        return self


FIXES = {
    "run_tag": "letters, digits and _ . = , + - only (it is part of one folder name)",
    "experiment_name": "letters, digits and _ . = , + - only (it is one folder name)",
}


def validated(model: type[BaseModel], container: dict[str, Any], tool: str = "") -> Any:
    """``model`` validated from a resolved config (plain dict); :class:`ConfigError` names every bad option and its
    fix (``tool``: the entry point's name in the message about unknown keys)."""
    try:
        return model.model_validate(container)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if p not in ("function-after",))
            key = ".".join(str(p) for p in loc)
            value = e.get("input")
            shown = "" if isinstance(value, dict) else f"={value!r}"
            if e["type"] == "extra_forbidden":
                lines.append(f"{key} is not an option{' of ' + tool if tool else ''} (no code reads it); remove it "
                             f"(a '+{key}=…' override or a stale config key)")
                continue
            msg = e["msg"].removeprefix("Value error, ")
            hint = FIXES.get(key, "")
            lines.append(f"{key or 'config'}{shown}: {msg}" + (f"; {hint}" if hint else ""))
        raise ConfigError("Invalid options (nothing was run; set them on the command line or in conf/):\n  "
                          + "\n  ".join(lines)) from None


def check(container: dict[str, Any]) -> RunOptions:
    """Validate a training config (plain dict); raise :class:`ConfigError` naming every bad option and its fix."""
    return validated(RunOptions, container)
