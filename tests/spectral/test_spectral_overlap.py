"""TSD overlap (recall, accuracy) on hand-built rate vectors with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectune.spectral import accuracy, recall, tsd_overlap

N = 20
PRED = torch.tensor([float(N - i) for i in range(N)])  # top-8 = {0..7}


def _true() -> torch.Tensor:
    """Top-4 = {0, 1, 10, 11}; top-16 = {0, 1, 10, 11, 2..5, 12..19}; the four smallest are 6..9."""
    t = torch.zeros(N)
    t[[0, 1, 10, 11]] = torch.tensor([100.0, 99.0, 98.0, 97.0])
    t[[2, 3, 4, 5]] = torch.tensor([50.0, 49.0, 48.0, 47.0])
    t[12:20] = torch.arange(40.0, 32.0, -1.0)
    t[[6, 7, 8, 9]] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    return t


def test_paper_defaults_on_a_hand_built_case() -> None:
    true = _true()
    assert recall(PRED, true) == 0.5  # {0..7} ∩ {0, 1, 10, 11} = {0, 1}: 2 of 4
    assert accuracy(PRED, true) == 0.75  # {0..7} ∩ top-16 = {0..5}: 6 of 8
    assert tsd_overlap(PRED, true) == {"recall": 0.5, "accuracy": 0.75, "k_pred": 8, "k_true_recall": 4,
                                       "k_true_accuracy": 16}


def test_perfect_and_opposite_predictions() -> None:
    true = _true()
    assert recall(true, true) == 1.0 and accuracy(true, true) == 1.0
    # -true predicts {6, 7, 8, 9, 16, 17, 18, 19}: none of the top-4, and 16..19 of the top-16
    assert recall(-true, true) == 0.0
    assert accuracy(-true, true) == 0.5


def test_configurable_k_and_array_like_inputs() -> None:
    true = _true()
    assert recall(PRED, true, k_pred=2, k_true=2) == 1.0
    assert accuracy(PRED, true, k_pred=4, k_true=4) == 0.5  # {0..3} ∩ {0, 1, 10, 11}
    assert recall(PRED.tolist(), true.numpy(), k_pred=20, k_true=20) == 1.0
    assert tsd_overlap(np.asarray(PRED), true, k_pred=4, k_true_recall=2, k_true_accuracy=4)["accuracy"] == 0.5


def test_undefined_rates_are_never_selected() -> None:
    pred = PRED.clone()
    pred[0] = float("nan")  # σ ≈ 0 direction: top-8 of pred becomes {1..8}
    assert recall(pred, _true()) == 0.25  # only 1 of {0, 1, 10, 11}


@pytest.mark.parametrize("kwargs", [{"k_pred": 21}, {"k_true": 21}, {"k_pred": 0}])
def test_bad_k_raises(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be between 1 and"):
        recall(PRED, _true(), **kwargs)
    with pytest.raises(ValueError, match="must be between 1 and"):
        accuracy(PRED, _true(), **kwargs)


def test_mismatched_or_non_vector_inputs_raise() -> None:
    with pytest.raises(ValueError, match="directions"):
        recall(PRED[:10], _true())
    with pytest.raises(ValueError, match="1-D"):
        accuracy(PRED[None], _true())
    with pytest.raises(ValueError, match="must be between"):
        tsd_overlap(PRED, _true(), k_true_accuracy=40)
