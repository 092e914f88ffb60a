"""``python -m spectune.evaluate``: score a finished run again, or run the lm-eval harness on any causal LM, offline.

Examples::

    python -m spectune.evaluate --run runs/single/smollm2/dash-r8-s8/boolq/seed0
    python -m spectune.evaluate --run runs/single/smollm2/lora-r8/boolq/seed0 --tasks spectune_boolq --limit 100
    python -m spectune.evaluate --model smollm2 --tasks spectune_arc_easy spectune_piqa --limit 100
    python -m spectune.evaluate --model smollm2 --adapter path/to/peft_adapter --out results.json

``--run`` loads the run's base model and its saved state through the run's own method (LoRA-Dash's dash term and
PeriodicLoRA's merged stages included; PEFT's loader alone would drop them). Without ``--tasks`` it re-scores the
run's own test carve-out with its own protocols and compares the result with the run's ``eval_results.json``; with
``--tasks`` it runs lm-eval on the trained model (merged in memory). Tasks prefixed ``spectune_`` ship with the
package and read the embedded data; any other lm-eval task needs lm-eval's own data (network or its cache).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

DEFAULT_TASKS = ["spectune_arc_easy"]


def is_timing(key: Any) -> bool:
    """Wall-clock entries of a metrics dict (``generation_seconds`` …): they differ on every scoring."""
    return isinstance(key, str) and (key.endswith("seconds") or key.endswith("_time") or key.endswith("_s"))


def max_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between the numbers of two nested metric dicts (inf if their keys differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k in set(a) | set(b) if not is_timing(k)}
        if any(k not in a or k not in b for k in keys):
            return math.inf
        return max((max_difference(a[k], b[k]) for k in keys), default=0.0)
    if isinstance(a, bool) or isinstance(b, bool):
        return 0.0 if a == b else math.inf
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b))
    return 0.0 if a == b else math.inf


def rescore_run(run: Path) -> dict[str, Any]:
    """The run's test carve-out scored again from its saved state: {"metrics", "recorded", "max_abs_diff"}."""
    from spectune.evaluation.suite import evaluate_splits
    from spectune.training.artifacts import load_trained, run_config
    from spectune.training.recipe import setup_data

    cfg = run_config(run)
    splits = setup_data(cfg)
    recorded_indices = run / "data_indices.json"
    if recorded_indices.exists():
        from spectune.data.tasks import write_indices

        tmp = run / ".data_indices.rescore.json"
        write_indices(splits, tmp)
        same = json.loads(tmp.read_text()) == json.loads(recorded_indices.read_text())
        tmp.unlink()
        if not same:
            raise SystemExit(f"The carve-out rebuilt from {run}/config.yaml differs from its data_indices.json: the "
                             "data or the carving code changed since the run; its scores cannot be reproduced.")
    model, tok, _ = load_trained(cfg, run)
    metrics = evaluate_splits(model, tok, splits, protocols=list(cfg.eval.protocols), batch_size=cfg.eval.batch_size,
                              max_length=cfg.train.max_length, num_beams=cfg.eval.num_beams,
                              max_new_tokens=cfg.eval.max_new_tokens)
    recorded_path = run / "eval_results.json"
    recorded = json.loads(recorded_path.read_text()) if recorded_path.exists() else None
    diff = max_difference(metrics, recorded) if recorded is not None else None
    return {"run": str(run), "metrics": metrics, "recorded": recorded, "max_abs_diff": diff}


def _lm_eval_run(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    from spectune.evaluation.lm_eval_bridge import run_lm_eval
    from spectune.training.artifacts import load_trained, run_config

    cfg = run_config(run)
    if cfg.model.family != "causal_lm":
        raise SystemExit(f"{run} trained {cfg.model.name}, an encoder; the lm-eval harness needs a causal LM. "
                         "Drop --tasks to re-score the run's own test set.")
    model, tok, method = load_trained(cfg, run)
    return run_lm_eval(method.merged(model), tokenizer=tok, tasks=args.tasks, limit=_limit(args.limit),
                       batch_size=args.batch_size, num_fewshot=args.num_fewshot)


def _limit(limit: float | None) -> int | float | None:
    return int(limit) if limit is not None and limit >= 1 else limit


def main(argv: list[str] | None = None) -> int:
    """The CLI; bad input exits with status 2 and one message (no traceback)."""
    from spectune.errors import UserError

    try:
        return _main(argv)
    except UserError as err:
        print(f"spectune.evaluate: error: {err}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    from spectune.evaluation.lm_eval_bridge import check_tasks, local_task_names

    p = argparse.ArgumentParser(prog="python -m spectune.evaluate", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="embedded name (smollm2), local folder, or hub name")
    src.add_argument("--run", type=Path, help="a spectune run folder (its base model + its saved state)")
    p.add_argument("--adapter", help="a plain PEFT adapter folder (with --model; a run's adapter needs --run)")
    p.add_argument("--tasks", nargs="+", default=None,
                   help=f"lm-eval task names (default with --model: {DEFAULT_TASKS[0]}; with --run: none, the run's "
                        f"own test set is re-scored); shipped offline: {', '.join(local_task_names())}")
    p.add_argument("--limit", type=float, default=None, help="items per lm-eval task (int) or fraction")
    p.add_argument("--batch-size", default=8)
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--out", type=Path, help="write the metrics JSON here (never overwrites an existing file)")
    args = p.parse_args(argv)
    if args.out is not None and args.out.exists():
        raise SystemExit(f"{args.out} exists; results are never overwritten. Choose another --out.")
    if args.run is not None and args.adapter is not None:
        raise SystemExit("--adapter goes with --model; a run folder's saved state is loaded by its method (--run).")
    if args.run is not None and not (args.run / "summary.json").exists():
        raise SystemExit(f"{args.run} holds no finished run (no summary.json). Pass a finished run folder.")
    if args.tasks:
        check_tasks(args.tasks)  # before any model loads

    if args.run is not None and args.tasks is None:
        out = rescore_run(args.run)
        for task, vals in out["metrics"].items():
            print(f"{task:<28}" + "  ".join(f"{k}={v:.4f}" for k, v in vals.items() if isinstance(v, float)))
        if out["recorded"] is None:
            print("the run has no eval_results.json to compare with")
        else:
            print(f"max |difference| to the run's eval_results.json: {out['max_abs_diff']:.3g}")
        record = out
    else:
        if args.run is not None:
            res = _lm_eval_run(args.run, args)
            model, adapter = str(args.run), None
        else:
            from spectune.evaluation.lm_eval_bridge import run_lm_eval

            model, adapter = args.model, args.adapter
            res = run_lm_eval(model, tasks=args.tasks or DEFAULT_TASKS, adapter_path=adapter,
                              limit=_limit(args.limit), batch_size=args.batch_size, num_fewshot=args.num_fewshot)
        for task, vals in res["metrics"].items():
            print(f"{task:<28}" + "  ".join(f"{k}={v:.4f}" for k, v in vals.items() if isinstance(v, float)))
        record = {"model": model, "adapter": adapter, "tasks": args.tasks or DEFAULT_TASKS,
                  "limit": _limit(args.limit), "metrics": res["metrics"]}
    if args.out is not None:
        from spectune.io import write_json_atomic

        write_json_atomic(args.out, record)
    else:
        json.dump(record["metrics"], sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
