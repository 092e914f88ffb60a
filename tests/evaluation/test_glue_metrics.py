"""GLUE metrics against hand-computed values (confusion counts, textbook correlation formulas)."""

from __future__ import annotations

import math

import pytest

from spectune.evaluation.glue_metrics import GLUE_TASKS, glue_metrics, normalize_glue_task, primary_metric

# Binary predictions with hand-counted confusion: TP = 3 (items 0, 3, 6), TN = 2 (1, 4), FP = 1 (2), FN = 2 (5, 7).
PREDS = [1, 0, 1, 1, 0, 0, 1, 0]
REFS = [1, 0, 0, 1, 0, 1, 1, 1]
TP, TN, FP, FN = 3, 2, 1, 2


def test_accuracy_and_f1_for_mrpc_and_qqp():
    for task in ("mrpc", "qqp"):
        m = glue_metrics(task, PREDS, REFS)
        assert m["accuracy"] == pytest.approx((TP + TN) / 8)
        assert m["f1"] == pytest.approx(2 * TP / (2 * TP + FP + FN))  # 6 / 9
        assert set(m) == {"accuracy", "f1"}


def test_matthews_for_cola():
    m = glue_metrics("cola", PREDS, REFS)
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))  # 4 / sqrt(240)
    assert m["matthews_correlation"] == pytest.approx(expected)
    assert m["accuracy"] == pytest.approx(5 / 8)


def test_matthews_is_zero_for_constant_predictions():
    assert glue_metrics("cola", [1, 1, 1, 1], [1, 0, 1, 0])["matthews_correlation"] == 0.0


def test_accuracy_only_for_other_tasks():
    m = glue_metrics("mnli", [0, 1, 2, 2, 1], [0, 2, 2, 2, 0])
    assert m == {"accuracy": pytest.approx(3 / 5)}
    assert glue_metrics("SST-2", [1.0, 0.0], [1, 1]) == {"accuracy": 0.5}


def _ranks(xs):
    """Average ranks (1-based), ties share the mean of their positions."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(x, y):
    n = len(x)
    sx, sy = sum(x), sum(y)
    sxy = sum(a * b for a, b in zip(x, y))
    sxx, syy = sum(a * a for a in x), sum(b * b for b in y)
    return (n * sxy - sx * sy) / math.sqrt((n * sxx - sx**2) * (n * syy - sy**2))


def test_pearson_and_spearman_for_stsb():
    preds = [0.5, 2.0, 3.5, 3.5, 4.8, 1.0]
    refs = [0.0, 2.4, 3.0, 4.0, 5.0, 1.2]
    m = glue_metrics("stsb", preds, refs)
    assert m["pearson"] == pytest.approx(_pearson(preds, refs), abs=1e-12)
    assert m["spearman"] == pytest.approx(_pearson(_ranks(preds), _ranks(refs)), abs=1e-12)
    assert primary_metric("stsb") == "pearson"


def test_primary_metrics_and_names():
    assert primary_metric("cola") == "matthews_correlation"
    assert primary_metric("glue/mrpc") == "accuracy"
    assert normalize_glue_task("STS-B") == "stsb"
    assert set(GLUE_TASKS) >= {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"}


def test_errors():
    with pytest.raises(ValueError, match="Unknown GLUE task"):
        glue_metrics("squad", [1], [1])
    with pytest.raises(ValueError, match="equal length"):
        glue_metrics("sst2", [1, 0], [1])
    with pytest.raises(ValueError, match="class ids"):
        glue_metrics("rte", [0.5, 1.0], [0, 1])


def test_primary_metric_agrees_with_task_registry():
    from spectune.data.tasks import TASKS

    for name, spec in TASKS.items():
        if spec.family == "glue":
            assert primary_metric(name) == spec.metric, name
