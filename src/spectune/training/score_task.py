"""Score the untuned model, or a finished run's saved state, on one task of a sweep's experiment: a table row that
trains nothing.

Transformer²'s tables need two such rows: the base model on every task (Table 1's expert tasks, Table 2's unseen
ones) and LoRA on the unseen tasks (Table 2: a LoRA trained on an expert task, scored on the unseen task of its
domain). The config is the experiment's (``experiment=<name>`` plus the overrides, e.g. ``task=t2/math seed=0``), so
the test carve-out, the evaluation protocols and the generation budget are the experiment's; ``--run`` loads a
finished run folder through its own method (``spectune.training.artifacts.load_trained``) on the run's base model.

    python -m spectune.training.score_task --experiment t2_table1_smoke --runs runs/t2_table1 task=t2/gsm8k seed=0
    python -m spectune.training.score_task --experiment t2_table2_smoke --runs runs/t2_table2 \\
        --run runs/t2_table1/smollm2/lora-r16/t2_gsm8k/seed0 task=t2/math seed=0

Writes a run folder ``<runs>/<model>/base/<task>/seed<k>`` (or ``<runs>/<model>/<run's method label>-from-<run's
task>/<task>/seed<k>``) with ``config.yaml`` (the evaluation config; with ``--run`` its ``method`` is the trained
run's), ``environment.json`` (this process's commit), ``data_indices.json``, ``eval_results.json`` and
``summary.json`` (``method: base`` or the run's method and rank, ``trained_on``, ``source_run``, ``source_commit``,
``runtime_s``). A finished folder is never overwritten (the command prints it and exits 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def output_folder(runs_root: Path, model: str, task: str, seed: int, source: dict[str, Any] | None) -> Path:
    """``<runs>/<model>/base/<task>/seed<k>`` or ``<runs>/<model>/<label>-from-<source task>/<task>/seed<k>``."""
    label = "base" if source is None else f"{source['label']}-from-{source['task']}"
    return Path(runs_root) / model / label / task / f"seed{seed}"


def score(runs_root: Path, experiment: str, overrides: Sequence[str] = (), run: Path | None = None) -> Path:
    """Evaluate the untrained model (``run`` None) or ``run``'s saved state on the experiment's test carve-out of its
    task; returns the run folder written (or found finished)."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spectune.config import CONF_DIR, to_container
    from spectune.data.tasks import write_indices
    from spectune.evaluation.suite import evaluate_splits
    from spectune.training.artifacts import load_base, load_trained, run_config
    from spectune.training.recipe import setup_data
    from spectune.training.run_folder import environment, write_json, write_yaml

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[f"experiment={experiment}", *overrides])
    source = None
    if run is not None:
        src_cfg = run_config(run)
        src_summary = json.loads((Path(run) / "summary.json").read_text())
        if src_summary.get("status") != "finished":
            raise SystemExit(f"{run} is not a finished run (summary.json status {src_summary.get('status')!r}).")
        if str(src_cfg.model.name) != str(cfg.model.name):
            raise SystemExit(f"{run} trained model={src_cfg.model.name}; the experiment scores model={cfg.model.name}.")
        source = {"run": str(run), "label": str(src_cfg.method.label), "task": str(src_cfg.task.name),
                  "method": str(src_cfg.method.name), "rank": src_cfg.method.get("r"),
                  "commit": src_summary.get("commit")}
    out = output_folder(runs_root, str(cfg.model.name), str(cfg.task.name), int(cfg.seed), source)
    if (out / "summary.json").exists():
        print(f"{out} is finished; a scored row is never overwritten.")
        return out
    t0 = time.time()
    splits = setup_data(cfg)
    if run is None:
        model, tok = load_base(cfg)
        if torch.cuda.is_available():
            model = model.cuda()
        model.eval()
    else:
        model, tok, _ = load_trained(src_cfg, Path(run))
    metrics = evaluate_splits(model, tok, splits, protocols=list(cfg.eval.protocols), batch_size=cfg.eval.batch_size,
                              max_length=cfg.train.max_length, num_beams=cfg.eval.num_beams,
                              max_new_tokens=cfg.eval.max_new_tokens)
    container = to_container(cfg)
    if run is not None:
        container["method"] = OmegaConf.to_container(src_cfg.method, resolve=True)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    write_yaml(out / "config.yaml", container)
    write_json(out / "environment.json", env)
    write_indices(splits, out / "data_indices.json")
    write_json(out / "eval_results.json", metrics)
    summary = {"status": "finished", "model": cfg.model.name, "method": "base" if source is None else source["method"],
               "commit": env["git"]["commit"], "task": cfg.task.name, "scale": cfg.scale_name, "seed": cfg.seed,
               "runtime_s": round(time.time() - t0, 1), "metrics": metrics}
    if source is not None:
        summary.update({"rank": source["rank"], "trained_on": source["task"], "source_run": source["run"],
                        "source_commit": source["commit"]})
    write_json(out / "summary.json", summary)
    print(f"{out}: {json.dumps(metrics)}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True, help="the experiment config, e.g. t2_table2_smoke")
    p.add_argument("--runs", required=True, type=Path, help="root of the table's run folders")
    p.add_argument("--run", type=Path, default=None, help="a finished run folder to score (default: the base model)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=t2/math seed=0")
    args = p.parse_args(argv)
    score(args.runs, args.experiment, args.overrides, args.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
