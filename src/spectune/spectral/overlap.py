"""Overlap of predicted and true task-specific directions (LoRA-Dash, Si et al. 2024, the TSD-overlap analysis).

``pred`` holds change rates δ_i predicted from an update (e.g. LoRA's s·B A after t steps), ``true`` the rates of the
true update ΔW* = W* − W (full fine-tuning); both are indexed like W's σ. With P = top-k_pred(pred) and
T = top-k_true(true):

* recall   = |P ∩ T| / k_true, with the paper's k_pred = 8, k_true = 4: share of the true top-4 inside the
  predicted top-8;
* accuracy = |P ∩ T| / k_pred, with k_pred = 8, k_true = 16: share of the predicted top-8 inside the true top-16.

Top sets come from ``top_directions`` (NaN last, ties to the larger σ).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from spectune.spectral.rates import top_directions

Rates = torch.Tensor | np.ndarray | Sequence[float]


def _as_rates(x: Rates, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    if t.dim() != 1:
        raise ValueError(f"{what} must be a 1-D rate vector; got shape {tuple(t.shape)}.")
    return t


def _intersection(pred: Rates, true: Rates, k_pred: int, k_true: int) -> int:
    p, t = _as_rates(pred, "pred"), _as_rates(true, "true")
    if p.numel() != t.numel():
        raise ValueError(f"pred has {p.numel()} directions but true has {t.numel()}.")
    for name, k in (("k_pred", k_pred), ("k_true", k_true)):
        if not 1 <= k <= p.numel():
            raise ValueError(f"{name}={k} must be between 1 and the number of directions ({p.numel()}).")
    top_p = set(top_directions(p, k_pred).tolist())
    top_t = set(top_directions(t, k_true).tolist())
    return len(top_p & top_t)


def recall(pred: Rates, true: Rates, k_pred: int = 8, k_true: int = 4) -> float:
    """|top-k_pred(pred) ∩ top-k_true(true)| / k_true: the share of the true TSD that the prediction found."""
    return _intersection(pred, true, k_pred, k_true) / k_true


def accuracy(pred: Rates, true: Rates, k_pred: int = 8, k_true: int = 16) -> float:
    """|top-k_pred(pred) ∩ top-k_true(true)| / k_pred: the share of the predicted directions that are true TSD."""
    return _intersection(pred, true, k_pred, k_true) / k_pred


def tsd_overlap(
    pred: Rates,
    true: Rates,
    k_pred: int = 8,
    k_true_recall: int = 4,
    k_true_accuracy: int = 16,
) -> dict[str, float | int]:
    """Both overlap measures and the k's they used, as a JSON-ready dict (one row of the over-training curve)."""
    return {
        "recall": recall(pred, true, k_pred, k_true_recall),
        "accuracy": accuracy(pred, true, k_pred, k_true_accuracy),
        "k_pred": k_pred,
        "k_true_recall": k_true_recall,
        "k_true_accuracy": k_true_accuracy,
    }
