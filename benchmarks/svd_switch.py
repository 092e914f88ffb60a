"""Where LoRA-Dash's switch time goes (issue 11): the stages of one SVD-cache miss and hit, per matrix shape.

LoRA-Dash's switch (Si et al. 2024, Sec. 4: after t pre-launch steps, the top-s task-specific directions u_i v_iᵀ of
each adapted W are chosen by change rate) needs the full SVD W = U diag(σ) Vᵀ of every adapted matrix. The step-time
benchmark measured a cold switch of 42.2 s on an H200 for LLaMA-3-8B block shapes cut to 8 layers
(`benchmarks/results/step_time_llama3_shape_8l_compiled_dropout0_5a62216.md`: 40 matrices). A cold switch is, per
matrix, `weight_hash` (a CPU copy and blake2b of the weight's bytes), `torch.linalg.svd` on the weight's device,
and the cache write (`safetensors` of U, σ, Vᵀ); a warm switch is the hash and the read. This times each stage
separately, for each distinct shape of the model, with every `torch.linalg.svd` driver the device offers (CUDA:
gesvd, gesvdj, gesvda, and the default), and checks each driver's σ against a float64 reference on the CPU
(max relative error of σ over σ_1, and ‖U diag(σ) Vᵀ − W‖_F / ‖W‖_F), so that a faster driver is only taken where
it is exact enough. Where a shape repeats (8 q matrices, 16 k/v, ...), one batched `torch.linalg.svd` over all of
them is timed too (``svd_batched``: the issue's "batched where shapes repeat"; cuSOLVER batches only small matrices,
so this says whether batching the switch's SVDs would pay).

    python benchmarks/svd_switch.py --device cuda --shapes llama3-8b --out $OUT/svd_switch.json  # GPU: > 4 min
    python benchmarks/svd_switch.py --device cpu --shapes 96x64,64x160 --repeats 1                   # CPU check

Random Gaussian weights (a spectrum like a trained matrix's does not change the cost of a dense SVD); seed fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from spectune.spectral.decomposition import SVDCache, weight_hash

#: LLaMA-3-8B's adapted shapes (d_out, d_in) and how many of each an 8-layer cut with targets q,k,v,up,down holds.
LLAMA3_8B = {(4096, 4096): 8, (1024, 4096): 16, (14336, 4096): 8, (4096, 14336): 8}
CUDA_DRIVERS = (None, "gesvdj", "gesvda", "gesvd")  # gesvd last: the slowest on large matrices


def parse_shapes(text: str) -> dict[tuple[int, int], int]:
    """``llama3-8b`` or a comma list ``OUTxIN[:count]``."""
    if text == "llama3-8b":
        return dict(LLAMA3_8B)
    out: dict[tuple[int, int], int] = {}
    for item in text.split(","):
        dims, _, count = item.partition(":")
        rows, cols = (int(v) for v in dims.lower().split("x"))
        out[(rows, cols)] = int(count or 1)
    return out


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls (the device synchronised around each) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], result


def accuracy(w: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor, s_ref: torch.Tensor) -> dict:
    """σ error against the float64 reference (over σ_1) and the relative reconstruction error, in float64."""
    U, S, Vh = (t.detach().double().cpu() for t in (U, S, Vh))
    w64 = w.detach().double().cpu()
    return {"sigma_max_rel_err": float((S - s_ref).abs().max() / s_ref[0]),
            "recon_rel_err": float(torch.linalg.norm((U * S) @ Vh - w64) / torch.linalg.norm(w64))}


def measure(shape: tuple[int, int], device: torch.device, repeats: int, drivers: Sequence[str | None],
            cache_root: Path, count: int = 1) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(*shape, generator=gen).div_(shape[1] ** 0.5).to(device=device, dtype=torch.bfloat16)
    s_ref = torch.linalg.svdvals(w.double().cpu())
    row: dict[str, Any] = {"shape": list(shape)}
    row["hash_s"], _ = timed(lambda: weight_hash(w), device, repeats)
    w32 = w.float()
    row["svd"] = {}
    for driver in drivers:
        name = driver or "default"
        try:
            sec, (U, S, Vh) = timed(lambda d=driver: torch.linalg.svd(w32, full_matrices=False, driver=d), device,
                                    repeats)
        except RuntimeError as err:  # a driver this build lacks
            row["svd"][name] = {"error": str(err).splitlines()[0]}
            continue
        row["svd"][name] = {"seconds": sec, **accuracy(w, U, S, Vh, s_ref)}
        print(f"[svd_switch] {shape[0]}x{shape[1]} {name}: {sec:.2f} s", flush=True)
    if count > 1:  # the "batched where shapes repeat": one call on the model's `count` matrices of this shape
        stack = w32.expand(count, *shape).contiguous()
        sec, (U, S, Vh) = timed(lambda: torch.linalg.svd(stack, full_matrices=False), device, 1)
        row["svd_batched"] = {"count": count, "seconds": sec, "per_matrix_s": sec / count,
                              **accuracy(w, U[0], S[0], Vh[0], s_ref)}
        print(f"[svd_switch] {shape[0]}x{shape[1]} batched x{count}: {sec:.2f} s", flush=True)
        del stack, U, S, Vh
    cache = SVDCache(cache_root)
    name = f"w{shape[0]}x{shape[1]}"
    row["cold_get_s"], _ = timed(lambda: cache.get("bench", f"{name}-{time.perf_counter_ns()}", w), device, 1)
    row["warm_get_s"], _ = timed(lambda: cache.get("bench", f"{name}-warm", w), device, 1)  # writes once
    row["warm_get_s"], _ = timed(lambda: cache.get("bench", f"{name}-warm", w), device, repeats)
    path = cache.path_for("bench", f"{name}-warm", w)
    row["cache_file_mib"] = path.stat().st_size / 2**20 if path.exists() else None
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", default="llama3-8b", help="llama3-8b or OUTxIN[:count],...")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--drivers", default=None,
                   help="comma list of torch.linalg.svd drivers (default: every one the device offers)")
    p.add_argument("--cache-dir", default=None, help="SVD cache folder (default: a fresh temporary one)")
    p.add_argument("--git-commit", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    device = torch.device(args.device)
    shapes = parse_shapes(args.shapes)
    drivers = tuple(None if d == "default" else d for d in args.drivers.split(",")) if args.drivers else \
        (CUDA_DRIVERS if device.type == "cuda" else (None,))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        for shape, n in shapes.items():  # each shape's row is written as soon as it is measured (a timeout keeps it)
            rows.append({**measure(shape, device, args.repeats, drivers, root, n), "count": n})
            write(args, device, rows, drivers, complete=len(rows) == len(shapes))
    return 0


def write(args: argparse.Namespace, device: torch.device, rows: list[dict[str, Any]],
          drivers: Sequence[str | None], complete: bool) -> None:
    """The JSON so far (``complete``: every shape measured); printed, and written atomically to ``--out``."""
    total = {"hash_s": sum(r["hash_s"] * r["count"] for r in rows),
             "cold_get_s": sum(r["cold_get_s"] * r["count"] for r in rows),
             "warm_get_s": sum(r["warm_get_s"] * r["count"] for r in rows)}
    for driver in drivers:
        name = driver or "default"
        if all("seconds" in r["svd"][name] for r in rows):
            total[f"svd_{name}_s"] = sum(r["svd"][name]["seconds"] * r["count"] for r in rows)
    if all("seconds" in r["svd"].get("default", {}) for r in rows):  # one batched call per repeated shape
        total["svd_default_batched_s"] = sum(r["svd_batched"]["seconds"] if "svd_batched" in r
                                             else r["svd"]["default"]["seconds"] for r in rows)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "commit": args.git_commit or os.environ.get("SPECTUNE_GIT_COMMIT"),
              "shapes": args.shapes, "repeats": args.repeats, "complete": complete, "rows": rows,
              "model_total": total if complete else None}
    text = json.dumps(result, indent=2)
    if complete:
        print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".tmp")
        tmp_out.write_text(text + "\n")
        tmp_out.replace(out)


if __name__ == "__main__":
    sys.exit(main())
