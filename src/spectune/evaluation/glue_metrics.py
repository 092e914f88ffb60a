"""GLUE metrics, computed with scikit-learn and SciPy (no hub metric scripts).

The protocol is GLUE's (Wang et al. 2019, Table 1) as the LoRA-Dash and AdaLoRA GLUE tables report it:

- CoLA: Matthews correlation (plus accuracy);
- STS-B: Pearson and Spearman correlation (Pearson is the reported number);
- MRPC and QQP: F1 of the positive class 1 ("paraphrase" / "duplicate") and accuracy (accuracy is the reported
  number in the LoRA-Dash and AdaLoRA tables);
- every other classification task (SST-2, MNLI-m/mm, QNLI, RTE, WNLI, AX): accuracy.

Values are fractions (0.93, not 93.0); the tables multiply by 100.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

CLASSIFICATION_TASKS = ("cola", "sst2", "mrpc", "qqp", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte",
                        "wnli", "ax")
REGRESSION_TASKS = ("stsb",)
GLUE_TASKS = CLASSIFICATION_TASKS + REGRESSION_TASKS

_PRIMARY = {"cola": "matthews_correlation", "stsb": "pearson"}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli_matched", "mnli-mm": "mnli_mismatched",
            "mnli_m": "mnli_matched", "mnli_mm": "mnli_mismatched"}


def normalize_glue_task(task: str) -> str:
    """Return the canonical GLUE task name for ``task`` ("glue/SST-2" -> "sst2"); raise on an unknown task."""
    name = task.strip().lower().rsplit("/", 1)[-1]
    name = _ALIASES.get(name, name).replace("-", "_")
    if name not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task '{task}'; known tasks: {', '.join(GLUE_TASKS)}.")
    return name


def primary_metric(task: str) -> str:
    """The metric a GLUE table reports for ``task``: Matthews for CoLA, Pearson for STS-B, accuracy otherwise."""
    return _PRIMARY.get(normalize_glue_task(task), "accuracy")


def glue_metrics(task: str, predictions: Sequence[float] | np.ndarray,
                 references: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Score ``predictions`` against ``references`` with the metrics of GLUE ``task``.

    Classification tasks take integer class ids (a float that is a whole number is accepted); STS-B takes real
    values. A correlation that is undefined (constant predictions) is returned as ``nan``, except Matthews
    correlation, which scikit-learn defines as 0 there.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    name = normalize_glue_task(task)
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 1:
        raise ValueError(f"predictions {preds.shape} and references {refs.shape} must be 1-D and of equal length.")
    if preds.size == 0:
        raise ValueError("Cannot score an empty prediction list.")
    if name in REGRESSION_TASKS:
        preds, refs = preds.astype(np.float64), refs.astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant input and returns nan: keep the nan
            pearson = float(pearsonr(preds, refs)[0]) if preds.size > 1 else math.nan
            spearman = float(spearmanr(preds, refs)[0]) if preds.size > 1 else math.nan
        return {"pearson": pearson, "spearman": spearman}
    if not (np.all(np.mod(preds, 1) == 0) and np.all(np.mod(refs, 1) == 0)):
        raise ValueError(f"GLUE task '{name}' is classification: predictions and references must be class ids.")
    preds, refs = preds.astype(np.int64), refs.astype(np.int64)
    out = {"accuracy": float(accuracy_score(refs, preds))}
    if name in ("mrpc", "qqp"):
        out["f1"] = float(f1_score(refs, preds, pos_label=1, average="binary", zero_division=0.0))
    if name == "cola":
        out["matthews_correlation"] = float(matthews_corrcoef(refs, preds))
    return out
