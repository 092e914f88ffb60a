"""Score the untrained base model on a sweep's test carve-out: the zero-shot row of a table.

Composes the same config as the sweep (``experiment=<name>`` plus overrides), loads the same carve-out (same seed and
sizes), evaluates the base model with the sweep's protocols, and writes a run folder ``<runs>/base/seed<k>/``
(config, environment, indices, eval_results, summary with ``method: "base"``), never over an existing one.

    python -m spectune.training.base_model --experiment plora_smoke --runs runs/plora [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def evaluate_base(runs_root: Path, experiment: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate the untrained model of ``experiment`` on its test carve-out; returns (and writes) the metrics."""
    import torch
    from hydra import compose, initialize_config_dir

    from spectune.config import CONF_DIR, to_container
    from spectune.data.tasks import write_indices
    from spectune.evaluation.suite import evaluate_splits
    from spectune.training.artifacts import load_base
    from spectune.training.recipe import setup_data
    from spectune.training.run_folder import environment, write_json, write_yaml

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[f"experiment={experiment}", *overrides])
    out = Path(runs_root) / "base" / f"seed{cfg.seed}"
    if (out / "summary.json").exists():
        print(f"{out} exists; the base model's scores are never overwritten.")
        return json.loads((out / "eval_results.json").read_text())
    t0 = time.time()
    splits = setup_data(cfg)
    model, tok = load_base(cfg)
    if torch.cuda.is_available():
        model = model.cuda()
    model.eval()
    metrics = evaluate_splits(model, tok, splits, protocols=list(cfg.eval.protocols), batch_size=cfg.eval.batch_size,
                              max_length=cfg.train.max_length, num_beams=cfg.eval.num_beams,
                              max_new_tokens=cfg.eval.max_new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    write_yaml(out / "config.yaml", to_container(cfg))
    write_json(out / "environment.json", env)
    write_indices(splits, out / "data_indices.json")
    write_json(out / "eval_results.json", metrics)
    write_json(out / "summary.json", {"status": "finished", "model": cfg.model.name, "method": "base",
                                      "commit": env["git"]["commit"], "task": cfg.task.name, "scale": cfg.scale_name,
                                      "seed": cfg.seed, "runtime_s": round(time.time() - t0, 1), "metrics": metrics})
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True, help="the sweep's experiment config, e.g. plora_smoke")
    p.add_argument("--runs", required=True, help="the sweep's runs folder (the base run goes to <runs>/base/)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides as the sweep had them (e.g. seed=1)")
    args = p.parse_args(argv)
    print(json.dumps(evaluate_base(Path(args.runs), args.experiment, args.overrides), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
