"""Time LoRA's input-side GEMM with its dropout mask, forward and backward, compiled on the GPU: h = drop(x) Aᵀ
through :class:`spectune.methods.lora_fused.DropoutMatmul`'s compiled CUDA path (the mask drawn packed by
``spectune::keep_bits``, applied as ``where(m, x, 0)``, 1/(1−p) on h; ``masked``) against h = x Aᵀ with no mask
(``plain``), at LLaMA-3-8B's LoRA input shapes (tokens × 4096 for q, k, v, up; tokens × 14336 for down; r = 32;
bf16), under each ``torch.compile`` mode given. Also lists the kernels one step runs (torch.profiler) with their
device time, which is what counts here: the wall time of one small step is mostly the host's. Whether inductor fused
the mask into a Triton GEMM template's loads under max-autotune (a ``triton_tem_`` kernel) is read off the list.
(Until f4e7220 it also timed Triton kernels that applied the mask as they loaded x, variants ``kernel`` and ``draw``:
benchmarks/NOTES.md, "Change 7".)"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from spectune.methods.lora_fused import DropoutMatmul
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from spectune.methods.lora_fused import DropoutMatmul
from dropout_bits import time_ms  # benchmarks/dropout_bits.py (this script's folder is on sys.path)


def kernels(fn: Callable[[], object]) -> list[dict]:
    """The CUDA kernels one call of ``fn`` runs: name, calls, device ms (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = [{"name": e.key[:120], "calls": e.count, "ms": round(e.device_time_total / 1000, 4)}
            for e in prof.key_averages() if e.device_time_total > 0]
    return sorted(rows, key=lambda r: -r["ms"])


def step_fn(variant: str, mode: str, x: torch.Tensor, a: torch.Tensor, g: torch.Tensor,
            p: float) -> Callable[[], object]:
    """One forward and backward of the variant's h, compiled with ``mode``: dx and dA for the upstream gradient g."""
    if variant == "masked":
        def fwd(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return DropoutMatmul.apply(x, a, p)
    else:
        def fwd(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return torch.mm(x, a.t())
    compiled = torch.compile(fwd, mode=None if mode == "default" else mode, fullgraph=True)

    def step() -> object:
        return torch.autograd.grad(compiled(x, a), (x, a), g)
    return step


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096, help="batch × sequence (8 × 512 in the step-time table)")
    ap.add_argument("--widths", default="4096,14336")
    ap.add_argument("--r", type=int, default=32)
    ap.add_argument("--p", type=float, default=0.05)
    ap.add_argument("--modes", default="default,max-autotune-no-cudagraphs")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--git-commit", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/masked_gemm.py times CUDA kernels: no CUDA device")
    rows = []
    for width in (int(w) for w in args.widths.split(",")):
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(args.tokens, width, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
        a = (torch.randn(args.r, width, device="cuda", dtype=torch.bfloat16, generator=gen) / width**0.5)
        a.requires_grad_()
        g = torch.randn(args.tokens, args.r, device="cuda", dtype=torch.bfloat16, generator=gen)
        for mode in args.modes.split(","):
            for variant in ("plain", "masked"):
                torch._dynamo.reset()
                step = step_fn(variant, mode, x, a, g, args.p)
                ms = time_ms(step, args.reps)
                ks = kernels(step)
                row = {"shape": [args.tokens, width], "r": args.r, "mode": mode, "variant": variant,
                       "ms_fwd_bwd": round(ms, 4), "device_ms": round(sum(k["ms"] for k in ks), 4), "kernels": ks,
                       "template_kernels": [k["name"] for k in ks if k["name"].startswith("triton_tem")]}
                rows.append(row)
                print({k: v for k, v in row.items() if k != "kernels"}, flush=True)
    command = "python benchmarks/masked_gemm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "p": args.p, "reps": args.reps,
              "commit": args.git_commit, "command": command, "rows": rows}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.rename(out)
    return result


if __name__ == "__main__":
    main()
