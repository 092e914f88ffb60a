"""One event stream, three sinks: metrics.jsonl, Weights & Biases (online/offline/disabled), the console."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("spectune")


class EventLogger:
    """Fan events out to ``metrics.jsonl`` (append, one JSON object a line) and W&B. Only rank 0 writes."""

    def __init__(self, run_dir: Path, config: dict[str, Any], mode: str = "disabled", project: str = "spectune",
                 entity: str | None = None, group: str | None = None, tags: list[str] | None = None,
                 name: str | None = None, is_main: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.is_main = is_main
        self.wandb_run = None
        if is_main and mode != "disabled":
            import wandb

            self.wandb_run = wandb.init(
                project=project, entity=entity, group=group, tags=list(tags or []), name=name, config=config,
                dir=str(run_dir), mode=mode, resume="allow", id=_wandb_id(run_dir),
                # No code, git metadata, command line or environment capture: secrets stay out of W&B.
                settings=wandb.Settings(save_code=False, disable_code=True, disable_git=True, disable_job_creation=True,
                                        console="off", x_disable_stats=True, x_disable_meta=True),
            )

    def log(self, event: str, step: int | None = None, **values: Any) -> None:
        """Record one event: ``{"event": event, "step": step, "time": unix, **values}``."""
        if not self.is_main:
            return
        rec = {"event": event, "step": step, "time": round(time.time(), 3)}
        rec.update({k: _jsonable(v) for k, v in values.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.wandb_run is not None:
            flat = {f"{event}/{k}": v for k, v in rec.items()
                    if isinstance(v, (int, float)) and k not in {"step", "time"}}
            if flat:
                self.wandb_run.log(flat, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        """Final values: a ``summary`` event and the W&B run summary."""
        self.log("summary", **values)
        if self.wandb_run is not None:
            for k, v in values.items():
                if isinstance(v, (int, float, str)):
                    self.wandb_run.summary[k] = v

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _wandb_id(run_dir: Path) -> str:
    """A stable W&B run id per run folder, so a resumed run continues the same W&B run."""
    id_file = run_dir / ".wandb_id"
    if id_file.exists():
        return id_file.read_text().strip()
    import uuid

    rid = uuid.uuid4().hex[:12]
    id_file.write_text(rid)
    return rid


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item"):
        return v.item()
    return v


class EventCallback(TrainerCallback):
    """Forward the Trainer's logs (loss, lr, grad norm, epoch) to the event logger as ``train`` events."""

    def __init__(self, events: EventLogger):
        self.events = events

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            # The Trainer's closing log carries train_loss; per-step logs carry train_runtime too when tokens are
            # counted (train.count_tokens: the running train_tokens_per_second), so that key cannot tell them apart.
            kind = "train_end" if "train_loss" in logs else "train"
            self.events.log(kind, step=state.global_step, **{"epoch": state.epoch, **logs})

