"""Where an SVF expert lives (run folder, expert folder or file) and which domain its run's task implies; light to
import (no torch), so the entry point refuses a wrong path before anything heavy loads.

Transformer² (Sun, Cetin, Tang 2025, §3.2) dispatches queries to experts by domain: GSM8K's expert answers math,
MBPP's code, ARC-Easy's reasoning; mixtures z' = Σ_k α_k z_k take the experts in the order given.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from spectune.adaptation.settings import ExpertError
from spectune.data.t2_cls import CLS_TASK

#: The expert file ``method=svf`` writes (``spectune.methods.svf.EXPERT_FILE``; a test keeps the two equal).
EXPERT_FILE = "svf_expert.safetensors"
#: The domain of an expert trained on each task (Transformer²: GSM8K → math, MBPP-Pro → code, ARC-Easy → reasoning).
TASK_DOMAINS: dict[str, str] = {"t2_gsm8k": "math", "t2_mbpp": "code", "t2_arc_easy": "reasoning",
                                "t2_math": "math", "t2_humaneval": "code", "t2_arc_challenge": "reasoning",
                                "gsm8k": "math"}


def resolve_expert(path: str | Path) -> tuple[Path, str | None]:
    """(expert file, task of its run or None) of an expert given as a run folder, an expert folder or the file.

    A run folder (``config.yaml``) must be an SVF run (``method.name: svf``); its expert is ``<run>/adapter``.
    """
    p = Path(path)
    if not p.exists():
        raise ExpertError(f"Expert '{path}' does not exist; pass an SVF run folder, its adapter/ folder or an "
                          f"{EXPERT_FILE} file.")
    task = None
    if p.is_dir() and (p / "config.yaml").exists():
        try:
            cfg = yaml.safe_load((p / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ExpertError(f"{p}/config.yaml cannot be read ({err}); is {p} a finished run folder?") from None
        method = (cfg.get("method") or {}).get("name")
        if method != "svf":
            raise ExpertError(f"{p} is a run of method={method}; Transformer²'s experts are SVF runs (method=svf).")
        task = (cfg.get("task") or {}).get("name")
        p = p / "adapter"
    file = p / EXPERT_FILE if p.is_dir() else p
    if not file.exists():
        raise ExpertError(f"{p} holds no {EXPERT_FILE}: not an SVF expert (saved by method=svf), or its run did not "
                          "finish saving.")
    return file, task


def check_roles(experts: list[str], cls_expert: str | None) -> dict[str, str] | None:
    """Refuse a classification expert (a run of task ``t2_cls``) among the task experts, and a ``cls_expert`` that is
    a run of another task; return the classifier run's ``task.domains`` (None when not a run folder or not recorded).

    Transformer² (Sun, Cetin, Tang 2025, §3.2): the classification expert only routes; the task experts answer.
    """
    for given in experts:
        if resolve_expert(given)[1] == CLS_TASK:
            raise ExpertError(f"{given} is a classification expert (task t2_cls), not a task expert; pass it as "
                              "cls_expert=... with strategy=cls_expert and list only task experts in experts=[...].")
    if cls_expert is None:
        return None
    _, task = resolve_expert(cls_expert)
    if task is not None and task != CLS_TASK:
        raise ExpertError(f"cls_expert={cls_expert} is a run of task {task}, not a classification expert; train one "
                          "with python -m spectune.train method=svf task=t2/cls train.objective=reinforce and pass "
                          "that run folder.")
    cfg_file = Path(cls_expert) / "config.yaml"
    if task is None or not cfg_file.exists():
        return None
    domains = ((yaml.safe_load(cfg_file.read_text()) or {}).get("task") or {}).get("domains")
    return {str(k): str(v) for k, v in domains.items() if v is not None} if isinstance(domains, dict) else None


__all__ = ["CLS_TASK", "EXPERT_FILE", "TASK_DOMAINS", "check_roles", "resolve_expert"]
