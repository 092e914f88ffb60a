"""Loading what a run saved: the one path from a run folder (or a composed config) to a model that can be scored.

Every load of a trained run goes through its method (:meth:`spectune.methods.base.Method.load_adapter` on
``<run>/<method.artifact>``), never through PEFT's loader alone, which silently drops terms PEFT does not know
(LoRA-Dash's U_S diag(δ) V_Sᵀ, PeriodicLoRA's merged stages). The training recipe scores its run through
:func:`load_trained`, and so does ``python -m spectune.evaluate --run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from spectune.config import method_kwargs
from spectune.errors import RunFolderMissingError, UserError
from spectune.methods import Method, build_method


def model_kind(cfg: DictConfig) -> str:
    """"causal_lm" or "sequence_classification", from the model config's family."""
    return "causal_lm" if cfg.model.family == "causal_lm" else "sequence_classification"


def num_labels(cfg: DictConfig) -> int | None:
    """The classifier's label count for GLUE tasks; None for causal LMs."""
    from spectune.data.tasks import TASKS

    return TASKS[cfg.task.name].num_labels if cfg.task.family == "glue" else None


def load_base(cfg: DictConfig) -> tuple[nn.Module, Any]:
    """The untrained model and tokenizer the run started from (same layer cut, dtype and revision)."""
    from spectune.models import load_model_and_tokenizer

    return load_model_and_tokenizer(cfg.model.name_or_path, model_kind(cfg), num_labels=num_labels(cfg),
                                    dtype=cfg.model.dtype, num_layers=cfg.model.get("num_layers"),
                                    revision=cfg.model.get("revision"))


def run_config(run_dir: Path) -> DictConfig:
    """The composed config a run folder recorded (``config.yaml``); a clear error when it is not a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise RunFolderMissingError(f"{run_dir} is not a run folder (no config.yaml). Pass the folder of one run, e.g. "
                                "runs/<experiment>/<model>/<method>/<task>/seed0.")
    return OmegaConf.create(yaml.safe_load(path.read_text()))


def load_trained(cfg: DictConfig, run_dir: Path, method: Method | None = None) -> tuple[nn.Module, Any, Method]:
    """(model, tokenizer, method) of a finished run: the base model with the run's saved state loaded by its method.

    ``method``: the trained method object (the recipe passes its own); built from ``cfg.method`` when None.
    """
    method = method or build_method(cfg.method.name, **method_kwargs(cfg))
    folder = Path(run_dir) / method.artifact
    if not folder.is_dir():
        raise RunFolderMissingError(f"{folder} is missing: the run did not finish saving (see {run_dir}/summary.json); "
                                "resume it with resume=true.")
    base, tok = load_base(cfg)
    try:
        model = method.load_adapter(base, folder)
    except UserError:
        raise
    except Exception as err:  # a truncated file, another model's adapter, a hand-edited folder
        raise UserError(f"{folder} cannot be loaded onto {cfg.model.name_or_path} by method={cfg.method.name} "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}). Is it a "
                        "complete, finished run of this model? Re-run or resume the run to rewrite it.") from err
    if torch.cuda.is_available():  # scored where it is fastest; the recipe and ``evaluate --run`` alike
        model = model.cuda()
    model.eval()
    return model, tok, method
