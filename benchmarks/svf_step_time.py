"""SVF training-step time and peak memory against the frozen-model floor (shared/design/performance.md, target 2).

One random-init LLaMA-shaped model (default: LLaMA-3-8B blocks cut to 8 layers, bf16 weights, batch 8 × 512), one
batch of random token ids (next-token loss on itself). Rows, each a median of ``--steps`` timed steps after
``--warmup`` (``torch.cuda.synchronize`` around each step):

- floor: every weight frozen, the input embeddings require grad: forward + backward of activation gradients only,
  the least any adapter method can cost; eager and ``torch.compile``.
- svf: the repo's ``SVF`` method attached (``spectune.methods.svf``; MLP gate/up/down by default), AdamW on z; one
  step = forward, backward, optimizer step, zero_grad; eager and ``torch.compile``. The attach (SVD of every target
  matrix on the GPU, fp32, no disk cache) is timed once.

Peak memory: ``torch.cuda.max_memory_allocated`` over the timed steps (stats reset just before). Prints a markdown
table and writes JSON with the device, versions and commit to ``--out``.

Run: ``python benchmarks/svf_step_time.py --out benchmarks/results/svf_step_time.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import spectune  # noqa: F401
except ImportError:  # a checkout without an install: use its src/
    sys.path.insert(0, str(REPO / "src"))

GIB = 2**30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--targets", default="gate_proj,up_proj,down_proj")
    p.add_argument("--form", default="official", choices=("paper", "official"))
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                      max_position_embeddings=max(2048, args.seq), attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.config.use_cache = False
    return model


def timed(fn: Any, warmup: int, steps: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"ms_per_step": statistics.median(times), "ms_min": min(times),
            "peak_gib": torch.cuda.max_memory_allocated() / GIB}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from spectune.methods.svf import SVF, SvfSpec

    args = parse_args(argv)
    model = build_model(args)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device="cuda",
                        generator=torch.Generator("cuda").manual_seed(1))
    rows: dict[str, dict[str, float]] = {}
    compile_modes = [False] if args.no_compile else [False, True]

    for p in model.parameters():
        p.requires_grad_(False)
    embed = model.get_input_embeddings()

    for comp in compile_modes:
        run = torch.compile(model) if comp else model

        def floor_step(run=run):
            x = embed(ids).detach().requires_grad_(True)
            run(inputs_embeds=x, labels=ids).loss.backward()

        rows[f"frozen floor, {'torch.compile' if comp else 'eager'}"] = timed(floor_step, args.warmup, args.steps)
        torch._dynamo.reset()

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    method = SVF(SvfSpec(target_modules=args.targets.split(","), form=args.form, svd_cache=False))
    method.attach(model, "CAUSAL_LM")
    torch.cuda.synchronize()
    attach_s = time.perf_counter() - t0
    z = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(z, lr=2e-3)

    for comp in compile_modes:
        run = torch.compile(model) if comp else model

        def svf_step(run=run):
            run(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        rows[f"SVF {args.form} ({args.targets}), factored, {'torch.compile' if comp else 'eager'}"] = \
            timed(svf_step, args.warmup, args.steps)
        torch._dynamo.reset()

    floor = min(v["ms_per_step"] for k, v in rows.items() if k.startswith("frozen floor"))
    for v in rows.values():
        v["x_floor"] = v["ms_per_step"] / floor
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
              "commit": commit, "args": {k: str(v) for k, v in vars(args).items()}, "attach_s": attach_s,
              "trainable_params": sum(p.numel() for p in z), "rows": rows}
    print("| what | ms / step | × compiled floor | peak GiB |\n| --- | --- | --- | --- |")
    for k, v in rows.items():
        print(f"| {k} | {v['ms_per_step']:.1f} | {v['x_floor']:.3f} | {v['peak_gib']:.1f} |")
    print(f"attach (SVD of {len(z)} matrices on the GPU, fp32): {attach_s:.1f} s; "
          f"trainable {result['trainable_params']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
