"""Copy a ``spectune.analyze`` output JSON without its per-direction arrays, small enough to commit.

    python -m experiments.slim_analysis runs/t2_analysis/analysis/tsd_compare_*.json --out results/figures/<name>

Kept: every top-level field, and per matrix everything but the full per-direction arrays (``rates``, ``sigma``,
``true_rates`` and the other run's ``compare.rates``): top directions, their rates and positions, overlaps. The copy
has ``slimmed`` naming what was dropped and the source file; the same name as the source, never overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from spectune.io import write_text_atomic

DROPPED = ("rates", "sigma", "true_rates")


def slim(data: dict, source: str) -> dict:
    """``data`` without the per-direction arrays of each matrix (and of its ``compare`` block)."""
    out = {k: v for k, v in data.items() if k != "matrices"}
    out["slimmed"] = {"dropped_per_matrix": [*DROPPED, "compare.rates"], "source": source}
    matrices = {}
    for name, m in (data.get("matrices") or {}).items():
        kept = {k: v for k, v in m.items() if k not in DROPPED}
        if isinstance(m.get("compare"), dict):
            kept["compare"] = {k: v for k, v in m["compare"].items() if k != "rates"}
        matrices[name] = kept
    out["matrices"] = matrices
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.slim_analysis", description=(__doc__ or "").split("\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="spectune.analyze output JSON files")
    p.add_argument("--out", required=True, type=Path, help="folder for the slim copies")
    args = p.parse_args(argv)
    for path in args.files:
        target = args.out / path.name
        if target.exists():
            print(f"error: {target} exists; it is never overwritten", file=sys.stderr)
            return 2
        write_text_atomic(target, json.dumps(slim(json.loads(path.read_text()), str(path)), indent=1) + "\n")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
