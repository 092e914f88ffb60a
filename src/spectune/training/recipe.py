"""The training recipe: config → data → model + method → Trainer (DeepSpeed optional) → artefacts → evaluation.

Steps (torchtune-style ``_setup_*``), each failing with a clear message before any training on bad input:
1. validate the config; 2. load the task's data; 3. load the model and attach the method (target modules and rank
checked); 4. write config, environment and carve-out indices into the run folder; 5. train by the objective
(``train.objective``): ``next_token`` with the HF Trainer (checkpoints for resume), ``reinforce`` with Transformer²'s
policy gradient (:mod:`spectune.training.reinforce`; the state with the best validation score is kept); events to
metrics.jsonl / W&B / console either way; 6. save the adapter (the method's ``save_adapter`` + ``save_extras``) and
the merged export; 7. evaluate from the saved artefacts (so what is scored is what was saved); 8. write summary.json
last. Nothing here branches on a method's name.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from spectune.config import CONF_DIR, method_kwargs, scrub_text, to_container, validate
from spectune.data.tasks import TaskSplits, load_task, write_indices
from spectune.errors import ConfigError, RunFolderExistsError, RunFolderMismatchError, UserError
from spectune.methods import Method, build_method
from spectune.methods.base import PretrainedParameters
from spectune.training.artifacts import load_base, load_trained, model_kind
from spectune.training.events import EventCallback, EventLogger
from spectune.training.features import causal_lm_features, encoder_features, t2_features
from spectune.training.run_folder import (
    RunFolder,
    environment,
    last_checkpoint,
    read_json,
    write_json,
    write_yaml,
)

log = logging.getLogger("spectune")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def init_distributed() -> None:
    """Under torchrun, join the process group before the run folder is touched (the Trainer reuses it)."""
    if (int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available()
            or torch.distributed.is_initialized()):
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def setup_data(cfg: DictConfig) -> TaskSplits:
    domains = cfg.task.get("domains")  # family t2_cls: the expert tasks and their domains
    return load_task(cfg.task.name, source=cfg.task.source, n_train=cfg.task.n_train, n_test=cfg.task.n_test,
                     seed=cfg.seed, path=cfg.task.path, n_valid=cfg.task.get("n_valid"),
                     domains=None if domains is None else dict(domains))


def optimizer_steps(cfg: DictConfig, n_train: int) -> int:
    """The run's number of optimizer steps: ``train.rl.iterations`` for ``objective=reinforce``, else as the HF
    Trainer counts them (max_steps, else epochs × steps/epoch)."""
    t = cfg.train
    if t.get("objective") == "reinforce":
        return int(t.rl.iterations)
    if t.max_steps and t.max_steps > 0:
        return int(t.max_steps)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batches = math.ceil(n_train / (t.batch_size * world))
    return math.ceil(float(t.epochs) * max(batches // t.grad_accum, 1))


def setup_model(cfg: DictConfig, splits: TaskSplits) -> tuple[torch.nn.Module, Any, Method, tuple[int, int]]:
    """The model with the method attached, its tokenizer, the method, and (trainable, total) parameters with total
    counted against the pretrained model (:class:`spectune.methods.base.PretrainedParameters`)."""
    from transformers import set_seed

    method = build_method(cfg.method.name, **method_kwargs(cfg))
    # The method's own checks against the schedule (e.g. a LoRA-Dash switch after the last step), before loading.
    method.check_schedule(optimizer_steps(cfg, len(splits.train)), epochs=cfg.train.epochs)
    set_seed(cfg.seed)  # classifier heads and LoRA's A are initialised from this seed
    model, tok = load_base(cfg)
    pretrained = PretrainedParameters(model)
    task_type = "CAUSAL_LM" if model_kind(cfg) == "causal_lm" else "SEQ_CLS"
    model = method.attach(model, task_type)
    return model, tok, method, pretrained.counts(model)


def build_features(cfg: DictConfig, records, tok) -> list[dict[str, Any]]:
    """Tokenised training features of ``records`` for the next-token objective (by task family and model kind)."""
    if cfg.task.family == "t2":  # the official prompt and the gold answer, not LLM-Adapters' template
        return t2_features(records, tok, cfg.train.max_length, cfg.train.train_on_inputs)
    if cfg.task.family == "t2_cls":  # the first pass's classification prompt and "Classification: \boxed{domain}"
        from spectune.adaptation.cls_data import classifier_sft_pair

        return t2_features(records, tok, cfg.train.max_length, cfg.train.train_on_inputs, pair=classifier_sft_pair)
    if model_kind(cfg) == "causal_lm":
        return causal_lm_features(records, tok, cfg.train.max_length, cfg.train.train_on_inputs)
    return encoder_features(records, tok, cfg.train.max_length)


def training_arguments(cfg: DictConfig, run_dir: Path):
    from transformers import TrainingArguments

    t = cfg.train
    ds = None
    if t.deepspeed:
        ds = str(CONF_DIR / "train" / "deepspeed" / f"{t.deepspeed}.json")
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        num_train_epochs=t.epochs if t.epochs else 1,
        max_steps=t.max_steps if t.max_steps and t.max_steps > 0 else -1,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_steps or (t.warmup_ratio or 0.0),
        weight_decay=t.weight_decay,
        adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        remove_unused_columns=False,
        deepspeed=ds,
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        dataloader_num_workers=0,
        optim=t.optimizer,
        disable_tqdm=False,
        # torch.compile of the model (accelerate's TorchDynamoPlugin, inductor) in the Trainer's prepare step.
        torch_compile=t.compile,
        torch_compile_mode=t.compile_mode,
        include_num_input_tokens_seen="non_padding" if t.count_tokens else "no",
    )


def decide_run_mode(folder: RunFolder) -> str:
    """:meth:`RunFolder.decide` on rank 0 alone, its answer (mode and folder, or its error) broadcast to every rank.

    Each rank checking the folder itself is a race: a slower rank finds the config rank 0 has just written and
    takes the fresh run for an unfinished one.
    """
    init_distributed()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return folder.decide()
    outcome: list[Any] = [None]
    if is_main_process():
        try:
            outcome[0] = ("mode", (folder.decide(), folder.path))
        except Exception as err:  # every rank raises rank 0's error
            outcome[0] = ("error", err)
    torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    folder.mode, folder.path = value
    return folder.mode


def _check_runs_root(cfg: DictConfig) -> None:
    root = Path(cfg.runs_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"runs_root={cfg.runs_root} is not writable ({err.strerror}); choose another "
                          "runs_root=... or free space there.") from None


def train_and_evaluate(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> dict[str, Any]:
    """Run one cell end to end; return the summary dict (also written to ``summary.json``).

    The run folder (:class:`RunFolder`) decides fresh / skip / resume / refuse; bad options are refused by
    :func:`spectune.config.validate` before anything loads, and recorded as the cell's failed ``summary.json`` when
    the folder holds no run.
    """
    t0 = time.time()
    try:
        container = to_container(cfg)
    except Exception:  # validate() below names what does not resolve
        container = {}
    folder = RunFolder(run_dir, container, multirun)
    try:
        validate(cfg)
        _check_runs_root(cfg)
        mode = decide_run_mode(folder)
    except UserError as err:
        if not isinstance(err, (RunFolderExistsError, RunFolderMismatchError)) and is_main_process() \
                and folder.may_record_failure():
            write_failure(cfg, folder, err, t0)
        raise
    if mode == "skip":
        log.info("%s is finished; skipped (results are never overwritten).", folder.path)
        return read_json(folder.path / "summary.json")
    try:
        return _run_cell(cfg, folder, mode, t0)
    except Exception as err:
        # The folder is this cell's (the never-overwrite checks passed): record the failure for sweeps and tables.
        write_failure(cfg, folder, err, t0)
        raise


def _run_cell(cfg: DictConfig, folder: RunFolder, mode: str, t0: float) -> dict[str, Any]:
    run_dir = folder.path
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    # Subnormal floats (tiny Adam second moments, decaying weights) make CPU kernels many times slower.
    torch.set_flush_denormal(True)

    splits = setup_data(cfg)
    model, tok, method, (n_trainable, n_total) = setup_model(cfg, splits)
    main = is_main_process()
    container = to_container(cfg)
    env = environment()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if mode == "new":
            write_yaml(run_dir / "config.yaml", container)
        write_json(run_dir / "environment.json", env)
        write_indices(splits, run_dir / "data_indices.json")
    events = EventLogger(run_dir, container, mode=cfg.logger.mode, project=cfg.logger.project,
                         entity=cfg.logger.entity, group=cfg.logger.group, tags=list(cfg.logger.tags),
                         name=f"{cfg.model.name}/{cfg.method.label}/{cfg.task.name}/seed{cfg.seed}", is_main=main)
    summary: dict[str, Any] = {}
    try:
        events.log("start", step=0, resume=mode == "resume", trainable_params=n_trainable, total_params=n_total,
                   n_train=len(splits.train), n_test=len(splits.test), objective=cfg.train.objective)
        if cfg.train.objective == "reinforce":
            trained = _train_reinforce(cfg, run_dir, model, tok, method, splits, events)
        else:
            trained = _train_next_token(cfg, folder, mode, model, tok, method, splits, events)
        record = method.run_record(model)  # what the method decided (LoRA-Dash's S, PLoRA's stages)
        if record is not None:
            if main:
                write_json(run_dir / "method_record.json", record)
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank's own view, to check they agree
                write_json(run_dir / f"method_record.rank{os.environ.get('RANK', '0')}.json", record)
        # Save what was learned (the method's files: save_adapter + save_extras) and the tokenizer.
        trained.save(run_dir / method.artifact)
        _barrier()
        metrics: dict[str, Any] = {}
        if cfg.train.deepspeed:
            # Evaluation reloads the saved artefacts on rank 0 alone: stop transformers from building that model
            # under ZeRO-3's partitioned init, which would wait on collectives from the other ranks.
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        if main:
            steps, losses, extra = trained.steps, trained.losses, trained.summary
            del trained, model
            metrics = _evaluate_saved(cfg, run_dir, splits, method, tok, export=cfg.export_merged)
            write_json(run_dir / "eval_results.json", metrics)
            summary = {
                "status": "finished", "model": cfg.model.name, "method": cfg.method.name,
                "method_label": cfg.method.label, "task": cfg.task.name, "scale": cfg.scale_name, "seed": cfg.seed,
                "rank": method.rank(), "commit": env["git"]["commit"],
                "runtime_s": round(time.time() - t0, 1), "objective": cfg.train.objective, "train_steps": steps,
                "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
                "trainable_params": n_trainable, "total_params": n_total, **extra,
                "metrics": metrics, "error": None,
            }
            events.summary({k: v for k, v in summary.items() if k != "metrics"} | _flat(metrics))
            write_json(run_dir / "summary.json", summary)
            if not cfg.keep_checkpoints:  # finished: resume points are no longer needed (full FT: ~3x model size)
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            _console_summary(run_dir, summary)
        _barrier()
        return summary
    finally:
        events.close()


@dataclass
class _Trained:
    """What an objective hands back to the recipe: optimizer steps, the loss per logged step, how to write the
    method's state (``save(<run>/<method.artifact>)``) and objective-specific summary fields."""

    steps: int
    losses: list[float]
    save: Callable[[Path], None]
    summary: dict[str, Any] = field(default_factory=dict)


def _train_next_token(cfg: DictConfig, folder: RunFolder, mode: str, model: torch.nn.Module, tok: Any,
                      method: Method, splits: TaskSplits, events: EventLogger) -> _Trained:
    """``train.objective=next_token``: the HF Trainer on the task's tokenised targets (DeepSpeed, checkpoints and
    resume, the method's callbacks and the analyses' trackers)."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, Trainer

    run_dir, main = folder.path, is_main_process()
    train_feats = build_features(cfg, splits.train, tok)
    if model_kind(cfg) == "causal_lm":
        collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    else:
        collator = DataCollatorWithPadding(tok)
    args = training_arguments(cfg, run_dir)
    if model_kind(cfg) == "sequence_classification":
        # The Trainer reads a ``**kwargs`` forward (PEFT wrappers, transformers 5 models) as "computes its own
        # loss normalisation from num_items_in_batch"; classifiers do not, and the Trainer would then skip the
        # gradient-accumulation division and multiply the loss by the world size (2x gradients and logged loss
        # on 2 ranks). Declare the truth.
        getattr(model, "get_base_model", lambda: model)().accepts_loss_kwargs = False
    callbacks = [EventCallback(events), *method.callbacks(events.log)]
    if cfg.analysis.get("rank_every") is not None:  # all ranks: gathering ZeRO-3 weights is collective
        from spectune.training.rank_tracking import UpdateRankTracker

        # Full FT has no adapter: track the matrices the method's target set would adapt (method.targets).
        targets = cfg.method.get("target_modules") or cfg.model.target_modules[cfg.method.get("targets", "default")]
        callbacks.append(UpdateRankTracker(method, cfg.analysis.rank_every, events.log, run_dir=run_dir,
                                           target_modules=targets if isinstance(targets, str) else list(targets),
                                           is_main=main))
    if cfg.analysis.tsd_reference is not None and main:
        from spectune.training.tsd_tracking import TSDTracker

        callbacks.append(TSDTracker(Path(cfg.analysis.tsd_reference), cfg.analysis.tsd_every, events.log,
                                    model_id=cfg.model.name_or_path, method=method))
    trainer = Trainer(model=model, args=args, train_dataset=train_feats, data_collator=collator,
                      callbacks=callbacks)
    resume_from = last_checkpoint(run_dir) if mode == "resume" else None
    if resume_from is not None and main:
        folder.drop_replaced_events(int(resume_from.name.split("-")[-1]))
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    def save(save_dir: Path) -> None:
        # Under ZeRO-3 the Trainer gathers the partitioned weights for this (collective: every rank calls it).
        trainer.save_model(str(save_dir))
        if main:
            tok.save_pretrained(str(save_dir))
            method.save_extras(getattr(trainer.model, "module", trainer.model), save_dir)

    return _Trained(result.global_step, losses, save)


def _train_reinforce(cfg: DictConfig, run_dir: Path, model: torch.nn.Module, tok: Any, method: Method,
                     splits: TaskSplits, events: EventLogger) -> _Trained:
    """``train.objective=reinforce`` (:mod:`spectune.training.reinforce`): the model ends holding the state with the
    best validation score, which is what gets saved; the curve is in ``rl_curve.json``."""
    from spectune.training.reinforce import CURVE_FILE, RLSettings, reward_task, train_reinforce

    task = reward_task(splits.spec.name, tok)
    result = train_reinforce(model, tok, method, splits.train, splits.validation, task,
                             RLSettings.from_config(cfg), run_dir=run_dir, log_event=events.log)

    def save(save_dir: Path) -> None:
        method.save(model, save_dir)  # save_adapter + save_extras: the files the Trainer path writes
        tok.save_pretrained(str(save_dir))

    return _Trained(result.iterations, result.losses, save,
                    {"rl": {"best_iteration": result.best_iteration, f"best_valid_{task.metric}": result.best_score,
                            "n_valid": len(splits.validation), "curve": CURVE_FILE}})


def _flat(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for task, vals in metrics.items():
        if isinstance(vals, dict):
            for k, v in vals.items():
                if isinstance(v, (int, float)):
                    out[f"{task}/{k}"] = v
    return out


def _evaluate_saved(cfg: DictConfig, run_dir: Path, splits: TaskSplits, method: Method, tok: Any,
                    export: bool) -> dict[str, Any]:
    """Reload the saved artefacts, write the merged export, and score the test carve-out."""
    from spectune.evaluation.suite import evaluate_splits

    # The method's own loader: PEFT's alone would silently drop extra terms (LoRA-Dash's U_S diag(δ) V_Sᵀ).
    model, _, _ = load_trained(cfg, run_dir, method)
    if export and not (run_dir / "merged").exists():
        merged = method.merged(model)
        merged.save_pretrained(str(run_dir / "merged"))
        tok.save_pretrained(str(run_dir / "merged"))
    model.eval()
    return evaluate_splits(model, tok, splits, protocols=list(cfg.eval.protocols), batch_size=cfg.eval.batch_size,
                           max_length=cfg.train.max_length, num_beams=cfg.eval.num_beams,
                           max_new_tokens=cfg.eval.max_new_tokens)


def _console_summary(run_dir: Path, s: dict[str, Any]) -> None:
    lines = [f"run folder   {run_dir}",
             f"cell         {s['model']} / {s['method_label']} / {s['task']} / seed {s['seed']}",
             f"steps        {s['train_steps']}   loss {s['train_loss_first']} -> {s['train_loss_last']}",
             f"params       {s['trainable_params']:,} trainable of {s['total_params']:,}",
             f"runtime      {s['runtime_s']} s"]
    for task, vals in s["metrics"].items():
        if isinstance(vals, dict):
            shown = ", ".join(f"{k}={v:.4f}" for k, v in vals.items() if isinstance(v, float))
            lines.append(f"eval {task:<8} {shown}")
    print("\n".join(["=" * 72, *lines, "=" * 72]), flush=True)


def write_failure(cfg: DictConfig, folder: RunFolder, err: BaseException, t0: float) -> None:
    """Record a failed cell (a sweep goes on past it); the error text never carries a secret value."""
    if not is_main_process():
        return
    try:
        _record_failure(cfg, folder, err, t0)
    except OSError as write_err:  # a full or read-only disk: the console still says what happened
        log.error("Could not record the failure in %s: %s", folder.path, write_err)


def _record_failure(cfg: DictConfig, folder: RunFolder, err: BaseException, t0: float) -> None:
    folder.record_failure({
        "status": "failed", "model": cfg.model.get("name"), "method": cfg.method.get("name"),
        "method_label": _safe(cfg.method, "label"), "task": cfg.task.get("name"), "scale": cfg.get("scale_name"),
        "seed": cfg.get("seed"), "runtime_s": round(time.time() - t0, 1), "metrics": {},
        "error": scrub_text(f"{type(err).__name__}: {err}", cfg)})


def _safe(node: Any, key: str) -> Any:
    try:
        return node.get(key)
    except Exception:  # an interpolation that does not resolve
        return None
