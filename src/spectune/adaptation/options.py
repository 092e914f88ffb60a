"""The options of ``python -m spectune.adapt`` (Transformer²'s two-pass inference), checked before anything loads.

:func:`check_adapt` validates a resolved config (plain dict, Hydra's ``conf/adapt.yaml`` composed) against these
pydantic models and raises :class:`~spectune.errors.ConfigError` listing every offending option with its value and
the rule it breaks; unknown keys are refused by name. :func:`settings_from` turns the checked options into the
plain dataclasses the runner takes (no Hydra below the entry point).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spectune.adaptation.cem import CEMSettings
from spectune.adaptation.settings import DOMAINS, AdaptSettings, FewShotSettings
from spectune.schema import ModelOptions, TaskOptions, validated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdaptEval(_Strict):
    batch_size: int = Field(ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    bits_per_byte: bool = True
    code_timeout: float = Field(gt=0)


class AdaptClassify(_Strict):
    max_new_tokens: int | None = Field(default=None, ge=1)


class AdaptFewShot(_Strict):
    shots: int = Field(ge=1)
    per_matrix: bool = False
    tie_break: Literal["gold", "completions", "none"] = "gold"
    max_new_tokens: int | None = Field(default=None, ge=1)
    population: int = Field(ge=2)
    elite_ratio: float = Field(gt=0.0, le=1.0)
    iterations: int = Field(ge=1)
    low: float = 0.0
    high: float = 1.0
    init_std: float | None = Field(default=None, gt=0)
    min_std: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _box(self) -> AdaptFewShot:
        if not self.low < self.high:
            raise ValueError(f"few_shot.low={self.low} must be below few_shot.high={self.high}")
        return self


class AdaptOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["prompt", "cls_expert", "few_shot"]
    experts: list[str] = Field(min_length=1)
    domains: list[Literal["code", "math", "reasoning"]] | None = None
    cls_expert: str | None = None
    allow_other_base: bool = False
    base_weights: Literal["exact", "unit_z"] = "exact"
    seed: int = Field(ge=0, lt=2**32)
    out_dir: str = Field(min_length=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval: AdaptEval
    classify: AdaptClassify
    few_shot: AdaptFewShot
    model: ModelOptions
    task: TaskOptions

    @model_validator(mode="after")
    def _consistent(self) -> AdaptOptions:
        if self.strategy == "cls_expert" and not self.cls_expert:
            raise ValueError("strategy=cls_expert needs cls_expert=<path of the classification expert>")
        if self.strategy != "cls_expert" and self.cls_expert:
            raise ValueError(f"cls_expert is used by strategy=cls_expert only; strategy={self.strategy} would ignore "
                             "it (drop cls_expert or set strategy=cls_expert)")
        if self.domains is not None and len(self.domains) != len(self.experts):
            raise ValueError(f"domains has {len(self.domains)} entries for {len(self.experts)} experts; give one of "
                             f"{list(DOMAINS)} per expert")
        if self.task.family != "t2":
            raise ValueError(f"task={self.task.name} is not a Transformer² task; use task=t2/<math|humaneval|"
                             "arc_challenge|gsm8k|mbpp|arc_easy>")
        if self.model.family != "causal_lm":
            raise ValueError(f"model={self.model.name} is a {self.model.family}; Transformer²'s inference needs a "
                             "causal LM")
        return self


def check_adapt(container: dict[str, Any]) -> AdaptOptions:
    """Validate a resolved adapt config (plain dict, ``hydra`` key removed); raise ``ConfigError`` naming every bad
    option."""
    return validated(AdaptOptions, container, tool="spectune.adapt")


def settings_from(opts: AdaptOptions) -> AdaptSettings:
    """The runner's settings from checked options (CEM seeded by ``seed``)."""
    f = opts.few_shot
    cem = CEMSettings(population=f.population, elite_ratio=f.elite_ratio, iterations=f.iterations, low=f.low,
                      high=f.high, init_std=f.init_std, min_std=f.min_std, carry_best=True, seed=opts.seed)
    return AdaptSettings(batch_size=opts.eval.batch_size, max_new_tokens=opts.eval.max_new_tokens,
                         classify_max_new_tokens=opts.classify.max_new_tokens, bits_per_byte=opts.eval.bits_per_byte,
                         code_timeout=opts.eval.code_timeout,
                         few_shot=FewShotSettings(shots=f.shots, per_matrix=f.per_matrix, tie_break=f.tie_break,
                                                  max_new_tokens=f.max_new_tokens, cem=cem))


__all__ = ["AdaptOptions", "check_adapt", "settings_from"]
