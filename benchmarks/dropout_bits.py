"""Time one dropout keep-mask draw on the GPU: ``torch.native_dropout`` (one Philox call per element; the mask as
bool, the dropped copy beside it) against :func:`spectune.methods.dropout_bits.keep_bits` (four per call, packed),
at LLaMA-3-8B's LoRA input shapes (tokens × 4096 for q, k, v, up; tokens × 14336 for down). Eager kernels, CUDA events,
median of ``--reps`` after a warm-up.

    python benchmarks/dropout_bits.py --tokens 4096 --out benchmarks/results/dropout_bits_<gpu>_<commit>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from spectune.methods import dropout_bits
    from spectune.methods.lora_fused import unpack_mask
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from spectune.methods import dropout_bits
    from spectune.methods.lora_fused import unpack_mask


def time_ms(fn: Callable[[], object], reps: int) -> float:
    """Median CUDA-event time of ``fn`` over ``reps`` calls after three warm-up calls (masked_gemm.py uses it too)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096, help="batch × sequence (8 × 512 in the step-time table)")
    ap.add_argument("--p", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--git-commit", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/dropout_bits.py times CUDA kernels: no CUDA device")
    rows = []
    for width in (4096, 14336):
        x = torch.randn(args.tokens, width, device="cuda", dtype=torch.bfloat16)
        native = time_ms(lambda x=x: torch.native_dropout(x, args.p, True), args.reps)
        packed = time_ms(lambda x=x: dropout_bits.keep_bits(x.numel(), args.p, x.device), args.reps)
        keep = unpack_mask(dropout_bits.keep_bits(x.numel(), args.p, x.device), x.shape)
        rows.append({"shape": [args.tokens, width], "elements": x.numel(), "native_dropout_ms": round(native, 4),
                     "keep_bits_ms": round(packed, 4), "speedup": round(native / packed, 2),
                     "keep_bits_drop_rate": round(1.0 - keep.float().mean().item(), 6)})
        print(rows[-1], flush=True)
    command = "python benchmarks/dropout_bits.py " + " ".join(argv or sys.argv[1:])
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "p": args.p, "reps": args.reps,
              "commit": args.git_commit, "command": command, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
