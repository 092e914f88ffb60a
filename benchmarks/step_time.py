"""Training-step time and peak GPU memory of full fine-tuning, LoRA, LoRA-Dash and PeriodicLoRA on one model.

Every method trains the same model (rebuilt from the same weights for each method) on the same batch of random token
ids, with the repo's own method classes (``spectune.methods.build_method(name, ...)`` then
``method.attach(model, "CAUSAL_LM")``) and torch AdamW on the trainable parameters, as the recipe's Trainer does.
One step = forward (loss on the batch itself, next-token), backward, gradient clipping, optimizer step, zero_grad.

- ms/step: median of ``--steps`` timed steps after ``--warmup`` untimed ones, ``torch.cuda.synchronize()`` before
  and after each step (wall clock, ``time.perf_counter``).
- peak MiB: ``torch.cuda.max_memory_allocated`` over the timed steps (stats reset just before them, so the peak
  includes weights, gradients and optimizer state held then); ``peak_overall_mib`` is the peak from the model's
  construction on (LoRA-Dash's switch and PLoRA's unload included). CUDA only (null on CPU).
- lora_dash: warm-up steps of plain LoRA, then ``LoRADash.switch(model)`` (timed once: the SVDs and rates, computed
  in memory, ``svd_cache=False``), then warm-up again and the timed steps: the numbers are those of the dash phase.
- plora: after the timed steps one ``PeriodicLoRA.unload(model, step, optimizer)`` is timed separately and amortised
  over a stage of ``--plora-stage`` steps: ``ms_per_step_amortised = ms_per_step + unload_ms / stage``.

Precision (``--precision``): ``bf16-autocast`` (default on CUDA): fp32 weights and optimizer, forward/backward under
``torch.autocast(dtype=bfloat16)``, what the recipe's ``train.precision=bf16`` (HF Trainer ``bf16=True``) does;
``bf16``: bf16 weights (and AdamW on them), no autocast; ``fp32`` (default on CPU).

Models: ``--model smollm2`` (the embedded SmolLM2-135M-Instruct, real weights, ``--layers`` cuts it) or
``--model llama-shape`` (random-init ``LlamaForCausalLM``, LLaMA-7B block shapes by default: hidden 4096,
intermediate 11008, 32 heads, vocab 32000, ``--layers 4``; nothing downloaded).

Run: ``python benchmarks/step_time.py --model llama-shape --layers 4 --out results.json`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import shlex
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import spectune  # noqa: F401
except ImportError:  # run from a checkout without an install: use its src/
    sys.path.insert(0, str(REPO / "src"))

METHODS = ("full", "lora", "lora_dash", "plora")
TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=("smollm2", "llama-shape"), default="llama-shape")
    p.add_argument("--layers", type=int, default=None,
                   help="blocks: llama-shape default 4; smollm2 default all 30 (a cut keeps the first N)")
    p.add_argument("--hidden", type=int, default=4096, help="llama-shape hidden size")
    p.add_argument("--intermediate", type=int, default=11008, help="llama-shape MLP size")
    p.add_argument("--heads", type=int, default=32, help="llama-shape attention heads")
    p.add_argument("--kv-heads", type=int, default=None, help="llama-shape key/value heads (default: --heads)")
    p.add_argument("--vocab", type=int, default=32000, help="llama-shape vocabulary")
    p.add_argument("--attn", default="sdpa", help="llama-shape attn_implementation (sdpa | eager | ...)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {METHODS}")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2r, the repo's configs)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (the repo's configs: 0.05)")
    p.add_argument("--targets", default=TARGETS)
    p.add_argument("--dash-s", type=int, default=8, help="LoRA-Dash directions s")
    p.add_argument("--plora-stage", type=int, default=200,
                   help="PLoRA stage length in steps, to amortise one unload (the repo's default unload_every)")
    p.add_argument("--plora-momentum", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip like the Trainer (0: no clipping)")
    p.add_argument("--precision", choices=("bf16-autocast", "bf16", "fp32"), default=None,
                   help="default: bf16-autocast on CUDA, fp32 on CPU")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--git-commit", default=None, help="record this commit (a checkout copied without .git has none)")
    p.add_argument("--out", default=None, help="write the JSON here (and the table beside it as .md)")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        p.error(f"--methods: unknown {unknown}; choose from {METHODS}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision is None:
        args.precision = "bf16-autocast" if args.device.startswith("cuda") else "fp32"
    if args.layers is None and args.model == "llama-shape":
        args.layers = 4
    if args.alpha is None:
        args.alpha = 2.0 * args.r
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1 (LoRA-Dash switches after the warm-up)")
    return args


# ----------------------------------------------------------------------------------------------------------- model
def model_config(args: argparse.Namespace) -> Any:
    """The benchmark model's transformers config (with the ``--layers`` cut applied), without building it."""
    if args.model == "smollm2":
        from transformers import AutoConfig

        from spectune.models import resolve_model_path

        cfg = AutoConfig.from_pretrained(str(resolve_model_path("smollm2")))
        if args.layers is not None:
            cfg.num_hidden_layers = args.layers
        return cfg
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads or args.heads,
        vocab_size=args.vocab, max_position_embeddings=max(2048, args.seq), tie_word_embeddings=False,
        use_cache=False, attn_implementation=args.attn,
    )


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """The benchmark model on ``args.device``, same weights on every call (seeded init / the embedded checkpoint)."""
    weight_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    if args.model == "smollm2":
        from spectune.models import load_model_and_tokenizer

        model, _ = load_model_and_tokenizer("smollm2", "causal_lm", dtype="float32", num_layers=args.layers)
        model = model.to(device=args.device, dtype=weight_dtype)
    else:
        from transformers import LlamaForCausalLM

        torch.manual_seed(args.seed)
        with torch.device(args.device):  # initialised where it trains: fast on a GPU, same seed for every method
            model = LlamaForCausalLM(model_config(args))
        model = model.to(weight_dtype)
    model.config.use_cache = False
    return model


def method_kwargs(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "full":
        return {}
    kw: dict[str, Any] = {"r": args.r, "alpha": args.alpha, "dropout": args.dropout,
                          "target_modules": [t.strip() for t in args.targets.split(",") if t.strip()]}
    if name == "lora_dash":  # t only feeds the callback schedule, unused here: the switch is called explicitly
        kw.update(s=args.dash_s, t=1, svd_cache=False, seed=args.seed)
    if name == "plora":
        kw.update(unload_every=args.plora_stage, unload_at_epoch_end=False, momentum=args.plora_momentum,
                  seed=args.seed)
    return kw


# ----------------------------------------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fingerprint(params: list[torch.Tensor]) -> torch.Tensor:
    """(sum, sum of squares) of every tensor in fp64, on CPU: cheap evidence that the parameters moved."""
    with torch.no_grad():
        return torch.stack([torch.stack([p.double().sum(), p.double().pow(2).sum()]) for p in params]).cpu()


class Trainer:
    """One model + method + AdamW + the fixed batch; ``step()`` is one training step, returns the loss tensor."""

    def __init__(self, model: torch.nn.Module, args: argparse.Namespace, batch: torch.Tensor):
        self.model, self.args, self.batch = model, args, batch
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=args.lr, weight_decay=0.0)
        dev_type = "cuda" if args.device.startswith("cuda") else "cpu"
        self.autocast = (lambda: torch.autocast(dev_type, dtype=torch.bfloat16)) \
            if args.precision == "bf16-autocast" else nullcontext
        self.steps_done = 0

    def step(self) -> torch.Tensor:
        with self.autocast():
            loss = self.model(input_ids=self.batch, labels=self.batch).loss
        loss.backward()
        if self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return loss.detach()

    def timed(self, n: int) -> tuple[list[float], list[float]]:
        """``n`` steps, each between two synchronisations: (ms per step, losses)."""
        ms, losses = [], []
        for _ in range(n):
            sync(self.args.device)
            t0 = time.perf_counter()
            loss = self.step()
            sync(self.args.device)
            ms.append((time.perf_counter() - t0) * 1e3)
            losses.append(float(loss))
        return ms, losses


def timed_call(device: str, fn: Any) -> tuple[Any, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, (time.perf_counter() - t0) * 1e3


def cuda_mib(fn: str) -> float | None:
    return round(getattr(torch.cuda, fn)() / MIB, 1) if torch.cuda.is_available() else None


def run_method(name: str, args: argparse.Namespace, batch: torch.Tensor) -> dict[str, Any]:
    """Build, attach, warm up, (switch), time, (unload); the method's record for the JSON."""
    from spectune.methods import build_method, trainable_parameters

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    method = build_method(name, **method_kwargs(name, args))
    model = method.attach(build_model(args), "CAUSAL_LM")
    model.train()
    trainer = Trainer(model, args, batch)
    trainable, total = trainable_parameters(model)
    before = fingerprint(trainer.params)
    rec: dict[str, Any] = {"trainable_params": trainable, "total_params": total}

    _, warm_losses = trainer.timed(args.warmup)
    if name == "lora_dash":
        switched, switch_ms = timed_call(args.device, lambda: method.switch(model))
        rec["switch_ms"] = round(switch_ms, 3)
        rec["switched_layers"] = len(switched)
        _, more = trainer.timed(args.warmup)  # the dash term's first steps (δ's optimizer state is created)
        warm_losses += more
    setup_peak = 0
    if cuda:
        setup_peak = torch.cuda.max_memory_allocated()  # construction, warm-up (and the dash switch)
        rec["allocated_before_timed_mib"] = cuda_mib("memory_allocated")
        torch.cuda.reset_peak_memory_stats()
    ms, losses = trainer.timed(args.steps)
    rec["peak_mib"] = cuda_mib("max_memory_allocated")
    rec["ms_per_step"] = round(statistics.median(ms), 3)
    rec["ms_per_step_all"] = [round(x, 3) for x in ms]
    rec["tokens_per_s"] = round(args.batch * args.seq / (rec["ms_per_step"] / 1e3), 1)
    after = fingerprint(trainer.params)
    rec["params_changed"] = int((before != after).any(dim=1).sum())
    rec["param_tensors"] = len(trainer.params)

    if name == "lora_dash":
        from spectune.methods.lora_dash import DELTA, dash_layers

        rec["dash_delta_abs_sum"] = float(sum(getattr(layer, DELTA)["default"].detach().abs().sum().item()
                                              for _, layer in dash_layers(model)))
    if name == "plora":
        stage, unload_ms = timed_call(
            args.device, lambda: method.unload(model, trainer.steps_done, trainer.optimizer, reason="benchmark"))
        rec["unload_ms"] = round(unload_ms, 3)
        rec["unload_merged_norm"] = stage["merged_norm"]
        rec["unload_layers"] = stage["layers"]
        rec["plora_stage_steps"] = args.plora_stage
        rec["ms_per_step_amortised"] = round(rec["ms_per_step"] + rec["unload_ms"] / args.plora_stage, 3)
        _, after_unload = trainer.timed(1)  # training goes on after the boundary
        losses += after_unload
    # The peak over the method's whole run: construction, warm-up, switch, timed steps, unload and the step after.
    rec["peak_overall_mib"] = round(max(setup_peak, torch.cuda.max_memory_allocated()) / MIB, 1) if cuda else None
    rec["losses"] = [round(x, 5) for x in warm_losses + losses]
    rec["loss_finite"] = all(math.isfinite(x) for x in rec["losses"])
    rec["trained"] = rec["loss_finite"] and rec["params_changed"] > 0
    return rec


def free_memory(device: str) -> None:
    """Drop what the last method left (PEFT models hold reference cycles) before the next one is measured."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------- report
def environment(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    import peft
    import transformers

    from spectune.training.run_folder import git_commit

    git = git_commit(REPO)
    if args.git_commit:
        git = {"commit": args.git_commit, "dirty": None, "source": "--git-commit"}
    cuda = args.device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine()),
        "device_type": "cuda" if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "git": git,
        "command": shlex.join([sys.executable, *([sys.argv[0]] if argv is None else ["benchmarks/step_time.py"]),
                               *(sys.argv[1:] if argv is None else argv)]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def add_ratios(methods: dict[str, dict[str, Any]]) -> None:
    base = methods.get("lora")
    for rec in methods.values():
        rec["ratio_ms_vs_lora"] = round(rec["ms_per_step"] / base["ms_per_step"], 3) if base else None
        rec["ratio_peak_vs_lora"] = (round(rec["peak_mib"] / base["peak_mib"], 3)
                                     if base and rec.get("peak_mib") and base.get("peak_mib") else None)
        if "ms_per_step_amortised" in rec:
            rec["ratio_amortised_ms_vs_lora"] = round(rec["ms_per_step_amortised"] / base["ms_per_step"], 3) \
                if base else None


def markdown(result: dict[str, Any]) -> str:
    env, cfg = result["environment"], result["config"]

    def f(x: Any, nd: int = 1) -> str:
        return "—" if x is None else (f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}")

    lines = [
        f"Step time, {cfg['model']} ({cfg['shape']}), batch {cfg['batch']} × seq {cfg['seq']}, {cfg['precision']}, "
        f"r={cfg['r']}, targets {cfg['targets']} — {env['device']}, torch {env['torch']}, "
        f"transformers {env['transformers']}, commit {(env['git'] or {}).get('commit') or 'unknown'}",
        "",
        "| method | ms/step | × LoRA | peak MiB | × LoRA | trainable params | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, rec in result["methods"].items():
        notes = []
        if "switch_ms" in rec:
            notes.append(f"after the switch (one-time switch {rec['switch_ms']:,.0f} ms)")
        if "unload_ms" in rec:
            notes.append(f"unload {rec['unload_ms']:,.0f} ms; amortised over {rec['plora_stage_steps']} steps: "
                         f"{rec['ms_per_step_amortised']:,.2f} ms/step (× {f(rec['ratio_amortised_ms_vs_lora'], 3)})")
        if not rec["trained"]:
            notes.append("**did not train**")
        lines.append(f"| {name} | {f(rec['ms_per_step'], 2)} | {f(rec['ratio_ms_vs_lora'], 3)} | {f(rec['peak_mib'])} "
                     f"| {f(rec['ratio_peak_vs_lora'], 3)} | {f(rec['trainable_params'])} | {'; '.join(notes)} |")
    lines.append("")
    lines.append(f"median of {cfg['steps']} timed steps after {cfg['warmup']} warm-up steps; peak = "
                 "torch.cuda.max_memory_allocated over the timed steps.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return benchmark(args, argv)
    finally:  # a caller in the same process (a test) keeps its own thread count
        torch.set_num_threads(threads)


def benchmark(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    mc = model_config(args)
    vocab = mc.vocab_size
    shape = {"hidden": mc.hidden_size, "intermediate": mc.intermediate_size, "heads": mc.num_attention_heads,
             "kv_heads": mc.num_key_value_heads, "layers": mc.num_hidden_layers, "vocab": vocab}
    g = torch.Generator().manual_seed(args.seed)
    batch = torch.randint(0, vocab, (args.batch, args.seq), generator=g).to(args.device)

    methods: dict[str, dict[str, Any]] = {}
    for name in args.methods:
        print(f"[step_time] {name} ...", file=sys.stderr, flush=True)
        methods[name] = run_method(name, args, batch)
        free_memory(args.device)
        rec = methods[name]
        peak = "" if rec["peak_mib"] is None else f", peak {rec['peak_mib']:,.0f} MiB"
        print(f"[step_time] {name}: {rec['ms_per_step']:.2f} ms/step{peak}, "
              f"trained={rec['trained']}", file=sys.stderr, flush=True)
    add_ratios(methods)
    config = {k: v for k, v in vars(args).items() if k not in {"out", "git_commit"}}
    config["shape"] = ", ".join(f"{k} {v}" for k, v in shape.items())
    config["model_shape"] = shape
    config["precision_detail"] = {
        "bf16-autocast": "fp32 weights and AdamW state; forward and backward under torch.autocast(bfloat16)",
        "bf16": "bf16 weights and AdamW on them; no autocast",
        "fp32": "fp32 weights, no autocast",
    }[args.precision]
    config["batch_data"] = f"random token ids, uniform over the vocabulary (seed {args.seed}), labels = inputs"
    result = {"environment": environment(args, argv), "config": config, "methods": methods}
    table = markdown(result)
    result["markdown"] = table
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        out.with_suffix(".md").write_text(table + "\n")
        print(f"[step_time] wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
