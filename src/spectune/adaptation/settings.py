"""Plain settings of Transformer²'s two-pass inference (Sun, Cetin, Tang 2025, §3.2) and its vocabulary; light to
import (no torch), so the entry point checks its options before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass, field

from spectune.adaptation.cem import CEMSettings
from spectune.data.t2_cls import DOMAINS  # the official classification prompt's categories, besides "other"
from spectune.errors import UserError

OTHER = "other"
STRATEGIES = ("prompt", "cls_expert", "few_shot")
TIE_BREAKS = ("gold", "completions", "none")
#: Seconds per model-written program (``spectune.evaluation.t2_scoring.CODE_TIMEOUT``).
CODE_TIMEOUT = 10.0


class AdaptError(UserError, ValueError):
    """Transformer² inference asked for something it cannot do; the message names the fix."""


class ExpertError(AdaptError):
    """An expert that cannot be used as asked (missing, not SVF, incompatible, another base)."""


@dataclass
class FewShotSettings:
    """Few-shot adaptation (z' = Σ_k α_k z_k, α by CEM): ``shots`` examples of the target task's train split (paper:
    3-20; official script 10), α per expert or per matrix (``per_matrix``; the official script's ``per_layer=true``),
    the CEM settings (population 32, elite ratio 0.2, α ∈ [0, 1], initial std 0.5, 50 iterations in the official
    script; the initial mean is 1/K), ``tie_break``: "gold" (mean per-token log-likelihood of the shots' gold
    answers), "completions" (the official: mean per-token log-likelihood of the candidate's own correct
    completions, 0 when none) or "none"; ``max_new_tokens`` of the shots' generations (None: the answers')."""

    shots: int = 10
    per_matrix: bool = False
    tie_break: str = "gold"
    max_new_tokens: int | None = None
    cem: CEMSettings = field(default_factory=CEMSettings)

    def __post_init__(self) -> None:
        if self.shots < 1:
            raise ValueError(f"few_shot.shots={self.shots} must be >= 1 (paper: 3-20).")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"few_shot.tie_break='{self.tie_break}' is not one of {list(TIE_BREAKS)}.")


@dataclass
class AdaptSettings:
    """Inference settings: ``batch_size`` of generation and likelihood passes; ``max_new_tokens`` of the answers
    (None: the task's official budget, 512; MATH 1024); ``classify_max_new_tokens`` of the first pass (None: the same
    budget, as the official first pass shares the task's sampling parameters); ``bits_per_byte``: also score the
    gold answers' likelihood; ``code_timeout``: seconds per program for code tasks."""

    batch_size: int = 8
    max_new_tokens: int | None = None
    classify_max_new_tokens: int | None = None
    bits_per_byte: bool = True
    code_timeout: float = CODE_TIMEOUT
    few_shot: FewShotSettings = field(default_factory=FewShotSettings)


__all__ = ["CODE_TIMEOUT", "DOMAINS", "OTHER", "STRATEGIES", "TIE_BREAKS", "AdaptError", "AdaptSettings", "ExpertError",
           "FewShotSettings"]
