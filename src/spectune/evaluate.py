"""``python -m spectune.evaluate``: the lm-eval harness on any causal LM, with or without a PEFT adapter, offline.

Examples::

    python -m spectune.evaluate --model smollm2 --tasks spectune_arc_easy spectune_piqa --limit 100
    python -m spectune.evaluate --run runs/single/smollm2/lora-r8/boolq/seed0 --tasks spectune_boolq
    python -m spectune.evaluate --model smollm2 --adapter path/to/adapter --out results.json

``--run`` takes a run folder and evaluates its base model with its adapter (or its merged weights). Tasks prefixed
``spectune_`` ship with the package and read the embedded data; any other lm-eval task needs lm-eval's own data
(network or its cache).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def _from_run(run: Path) -> tuple[str, str | None, int | None]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if cfg["model"]["family"] != "causal_lm":
        raise SystemExit(f"{run} trained {cfg['model']['name']}, an encoder; the lm-eval harness needs a causal LM.")
    if (run / "adapter" / "adapter_config.json").exists():
        return cfg["model"]["name_or_path"], str(run / "adapter"), cfg["model"].get("num_layers")
    if (run / "merged" / "config.json").exists():
        return str(run / "merged"), None, None
    raise SystemExit(f"{run} has neither adapter/ nor merged/: is the run finished (summary.json)?")


def main(argv: list[str] | None = None) -> int:
    from spectune.evaluation.lm_eval_bridge import local_task_names, run_lm_eval

    p = argparse.ArgumentParser(prog="python -m spectune.evaluate", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="embedded name (smollm2), local folder, or hub name")
    src.add_argument("--run", type=Path, help="a spectune run folder (base model + its adapter)")
    p.add_argument("--adapter", help="a PEFT adapter folder (with --model)")
    p.add_argument("--tasks", nargs="+", default=["spectune_arc_easy"],
                   help=f"lm-eval task names; shipped offline: {', '.join(local_task_names())}")
    p.add_argument("--limit", type=float, default=None, help="items per task (int) or fraction")
    p.add_argument("--batch-size", default=8)
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--out", type=Path, help="write the metrics JSON here (never overwrites an existing file)")
    args = p.parse_args(argv)
    if args.out is not None and args.out.exists():
        raise SystemExit(f"{args.out} exists; results are never overwritten. Choose another --out.")

    if args.run is not None:
        model, adapter, num_layers = _from_run(args.run)
        if num_layers:
            raise SystemExit("The run trained a layer cut of its model; lm-eval would load the full model. "
                             "Evaluate its merged/ export instead (export_merged=true).")
    else:
        model, adapter = args.model, args.adapter
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    out = run_lm_eval(model, tasks=args.tasks, adapter_path=adapter, limit=limit, batch_size=args.batch_size,
                      num_fewshot=args.num_fewshot)
    metrics = out["metrics"]
    for task, vals in metrics.items():
        print(f"{task:<28}" + "  ".join(f"{k}={v:.4f}" for k, v in vals.items() if isinstance(v, float)))
    if args.out is not None:
        from spectune.training.run_folder import write_json

        write_json(args.out, {"model": model, "adapter": adapter, "tasks": args.tasks, "limit": limit,
                              "metrics": metrics})
    else:
        json.dump(metrics, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
