"""Training-step time and peak GPU memory of every method against the frozen model's floor, through the recipe's set-up.

Rows (``--rows``), each ``eager`` and/or ``compiled`` (``--modes``), in one run on one model shape and one batch:

- ``floor``: every weight frozen, the input embeddings' output requires grad: forward + backward of activation
  gradients only, the least any adapter method can cost (no optimizer); wrapped like the method rows (the Trainer's
  ``accelerator.prepare_model``: autocast, outputs to fp32, ``torch.compile`` in the compiled mode).
- ``peft_lora``: PEFT's own LoRA forward (``method=lora method.fused=false``), the reference row.
- ``full``, ``lora``, ``lora_dash``, ``plora``, ``svf``: the repo's methods as the recipe builds them: the Hydra config
  composed with ``method=<name>`` and the options below, ``build_method(cfg.method.name, **method_kwargs(cfg))`` then
  ``method.attach(model, "CAUSAL_LM")`` (``recipe.setup_model``), ``recipe.training_arguments(cfg)`` (``train.compile``
  → TrainingArguments ``torch_compile``; ``train.precision=bf16`` → ``bf16=True``), an HF ``Trainer`` on them whose
  ``create_optimizer()`` gives the recipe's AdamW and whose ``accelerator.prepare_model`` applies the autocast and
  ``torch.compile`` the Trainer applies. One step = ``Trainer.training_step`` (forward, loss, backward),
  ``accelerator.clip_grad_norm_``, ``optimizer.step()``, ``zero_grad``: the Trainer's inner loop, no data loader.

Measured: ms/step = median of ``--steps`` timed steps after ``--warmup`` untimed ones (``torch.cuda.synchronize``
around each step; the first warm-up step's time, compilation included, is ``first_step_s``); peak =
``torch.cuda.max_memory_allocated`` over the timed steps (CUDA only). ``ratio_vs_floor`` = ms/step ÷ the compiled
floor's (the eager floor's when no compiled one ran); ``peak_vs_floor_mib`` = peak − the compiled floor's peak;
``ratio_vs_peft_lora`` against PEFT's LoRA in the same mode.

- lora_dash: warm-up of plain LoRA, then ``LoRADash.switch(model)`` (timed: ``switch_ms``; W's SVDs through the disk
  cache in a fresh folder, so the eager row's switch is cold and the compiled row's warm), warm-up again, timed steps.
- plora: after the timed steps two ``PeriodicLoRA.unload`` calls are timed, each followed by a step: the run's first
  (``unload_ms_first``, cold) and a later one (``unload_ms``, what each further stage pays), amortised over
  ``--plora-stage`` steps: ``ms_per_step_amortised``; its ``ratio_vs_floor`` uses the amortised time.
- svf: ``attach_s`` (the SVDs of the targets, same disk cache: cold, then warm).

Precision (``--precision``): ``bf16`` = bf16 weights (``model.dtype=bfloat16``) with ``train.precision=bf16``
(PEFT keeps fp32 adapter masters; the Trainer's autocast); ``bf16-autocast`` = fp32 weights, ``train.precision=bf16``;
``fp32``. Models: ``--model llama-shape`` (random-init ``LlamaForCausalLM``, ``--hidden`` … ``--vocab``; nothing
downloaded) or ``--model smollm2`` (the embedded checkpoint).

Run (H200 anchor, LLaMA-3-8B blocks): see benchmarks/NOTES.md, "Training step time".
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import spectune  # noqa: F401
except ImportError:  # run from a checkout without an install: use its src/
    sys.path.insert(0, str(REPO / "src"))

ROWS = ("floor", "peft_lora", "full", "lora", "lora_dash", "plora", "svf")
MODES = ("eager", "compiled")
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
    p.add_argument("--rows", "--methods", dest="rows", default=",".join(ROWS), help=f"comma list of {ROWS}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the compiled rows (inductor; eager/aot_eager for quick checks)")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2r, the repo's configs)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (the repo's configs: 0.05)")
    p.add_argument("--targets", default=TARGETS)
    p.add_argument("--svf-targets", default="gate_proj,up_proj,down_proj", help="SVF's matrices (MLP experts)")
    p.add_argument("--dash-s", type=int, default=8, help="LoRA-Dash directions s")
    p.add_argument("--plora-stage", type=int, default=200,
                   help="PLoRA stage length in steps, to amortise one unload (the repo's default unload_every)")
    p.add_argument("--plora-momentum", type=float, default=0.0)
    p.add_argument("--profile-unload", action="store_true",
                   help="also profile a third PLoRA unload (torch.profiler, CPU and CUDA): its top operators by self "
                        "time go into the plora row (unload_profile) and the notes")
    p.add_argument("--profile-steps", action="store_true",
                   help="also profile one step of every row after its timed steps (torch.profiler; CUDA kernels on "
                        "a GPU): device time by kernel category and the top kernels go into the row (step_profile) "
                        "and a second table")
    p.add_argument("--set", dest="train_set", action="append", default=[], metavar="train.KEY=VALUE",
                   help="a train.* override for every row's recipe config, the floor's included (repeatable), e.g. "
                        "train.optimizer=adamw_torch_fused or train.compile_mode=reduce-overhead")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip like the Trainer")
    p.add_argument("--precision", choices=("bf16-autocast", "bf16", "fp32"), default=None,
                   help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--svd-cache", default=None, help="SVD cache folder (default: a fresh temporary one: cold, warm)")
    p.add_argument("--git-commit", default=None, help="record this commit (a checkout copied without .git has none)")
    p.add_argument("--out", default=None, help="write the JSON here (and the table beside it as .md)")
    args = p.parse_args(argv)
    args.rows = [m.strip() for m in args.rows.split(",") if m.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.rows if m not in ROWS] + [m for m in args.modes if m not in MODES]
    if unknown or not args.rows or not args.modes:
        p.error(f"--rows / --modes: unknown {unknown}; choose from {ROWS} and {MODES}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision is None:
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
    if args.layers is None and args.model == "llama-shape":
        args.layers = 4
    if args.alpha is None:
        args.alpha = 2.0 * args.r
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1 (LoRA-Dash switches after the warm-up)")
    bad = [o for o in args.train_set if not o.startswith("train.") or "=" not in o
           or o.split("=")[0] in ("train.compile", "train.precision", "train.lr", "train.batch_size")]
    if bad:
        p.error(f"--set {bad}: give train.KEY=VALUE overrides other than train.compile, train.precision, train.lr and "
                "train.batch_size, which --modes, --precision, --lr and --batch set")
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
        with torch.device(args.device):  # initialised where it trains: fast on a GPU, same seed for every row
            model = LlamaForCausalLM(model_config(args))
        model = model.to(weight_dtype)
    model.config.use_cache = False
    return model


def overrides(row: str, compiled: bool, args: argparse.Namespace) -> list[str]:
    """Hydra overrides that make the recipe's config this row (method, its options, train.precision/compile)."""
    name = "lora" if row == "peft_lora" else row
    targets = args.svf_targets if name == "svf" else args.targets
    precision = "fp32" if args.precision == "fp32" else "bf16"
    out = [f"method={name}", f"train.lr={args.lr}", f"train.max_grad_norm={args.max_grad_norm}",
           f"train.precision={precision}", f"train.compile={str(compiled).lower()}",
           f"train.batch_size={args.batch}", "train.weight_decay=0.0", f"seed={args.seed}", "logger.mode=disabled"]
    out += args.train_set
    if name != "full":
        out.append(f"method.target_modules=[{targets}]")
    if name in ("lora", "lora_dash", "plora"):
        out += [f"method.r={args.r}", f"method.alpha={args.alpha}", f"method.dropout={args.dropout}",
                f"method.fused={str(row != 'peft_lora').lower()}"]
    if name == "lora_dash":  # t only feeds the callback schedule, unused here: the switch is called explicitly
        out += [f"method.s={args.dash_s}", "method.t=1", "method.svd_cache=true"]
    if name == "plora":
        out += [f"method.unload_every={args.plora_stage}", "method.unload_at_epoch_end=false",
                f"method.momentum={args.plora_momentum}"]
    if name == "svf":
        out += ["method.svd_cache=true"]
    return out


def compose(overrides_: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from spectune.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides_, return_hydra_config=False)


# ----------------------------------------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fingerprint(params: list[torch.Tensor]) -> torch.Tensor:
    """(sum, sum of squares) of every tensor in fp64, on CPU: cheap evidence that the parameters moved."""
    with torch.no_grad():
        return torch.stack([torch.stack([p.double().sum(), p.double().pow(2).sum()]) for p in params]).cpu()


def timed_steps(step: Callable[[], torch.Tensor], n: int, device: str) -> tuple[list[float], list[float]]:
    """``n`` steps, each between two synchronisations: (ms per step, losses)."""
    ms, losses = [], []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        loss = step()
        sync(device)
        ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(float(loss))
    return ms, losses


def timed_call(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, (time.perf_counter() - t0) * 1e3


def profiled(device: str, fn: Callable[[], Any]) -> list[Any]:
    """``torch.profiler``'s per-operator (and, on CUDA, per-kernel) averages of one call of ``fn``, synchronised."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.startswith("cuda") else [])]
    sync(device)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    return list(prof.key_averages())


def device_us(event: Any) -> float:
    """A profiler average's self time on the device, in µs (the attribute's name changed across torch versions)."""
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0) or 0


def profile_call(device: str, fn: Callable[[], Any], top: int = 15) -> list[dict[str, Any]]:
    """The operators of one call of ``fn`` under torch.profiler, by self time (device time first on CUDA)."""
    rows = []
    for e in profiled(device, fn):
        rows.append({"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 3),
                     "self_device_ms": round(device_us(e) / 1e3, 3)})
    rows.sort(key=lambda r: (r["self_device_ms"] + r["self_cpu_ms"]), reverse=True)
    return rows[:top]


KERNEL_CATEGORIES = (  # first match wins; names as CUDA kernels (cuBLAS / CUTLASS / inductor's Triton) show them
    ("gemm", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul", "splitk", "aten::mm", "aten::addmm",
              "aten::bmm")),
    ("attention", ("flash", "fmha", "attention", "sdpa", "efficient")),
    ("dropout / RNG", ("dropout", "philox", "bernoulli", "rand", "keep_bits")),  # keep_bits: dropout_bits.py
    ("triton (fused pointwise, reductions)", ("triton",)),
    ("copies, fills", ("memcpy", "memset", "copy", "fill")),
)


def kernel_category(name: str) -> str:
    """A kernel's category for ``step_profile`` (``KERNEL_CATEGORIES``; "other" when none matches)."""
    low = name.lower()
    return next((cat for cat, keys in KERNEL_CATEGORIES if any(k in low for k in keys)), "other")


def profile_step(device: str, step: Callable[[], Any], top: int = 25) -> dict[str, Any]:
    """One training step under torch.profiler: on CUDA the kernels' device time (total, by :func:`kernel_category`,
    the ``top`` kernels), elsewhere the operators' self CPU time the same way; ``kind`` says which."""
    cuda = device.startswith("cuda")
    kernels = []
    for e in profiled(device, step):
        if getattr(e, "is_user_annotation", False):
            continue  # a region (e.g. "Optimizer.step#AdamW.step" on the GPU timeline) overlaps its kernels' time
        if cuda:
            us = device_us(e)
            if getattr(e, "device_type", None) != torch.autograd.DeviceType.CUDA:
                continue  # CPU-side operators: their kernels are counted as kernels
        else:
            us = e.self_cpu_time_total
        if us > 0:
            kernels.append({"name": e.key[:160], "calls": e.count, "ms": round(us / 1e3, 4),
                            "category": kernel_category(e.key)})
    kernels.sort(key=lambda k: k["ms"], reverse=True)
    by_cat: dict[str, float] = {}
    for k in kernels:
        by_cat[k["category"]] = by_cat.get(k["category"], 0.0) + k["ms"]
    return {"kind": "cuda kernels, device time" if cuda else "operators, self CPU time",
            "total_ms": round(sum(k["ms"] for k in kernels), 3),
            "by_category_ms": {c: round(v, 3) for c, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
            "kernels": len(kernels), "launches": sum(k["calls"] for k in kernels), "top": kernels[:top]}


def cuda_mib(fn: str) -> float | None:
    return round(getattr(torch.cuda, fn)() / MIB, 1) if torch.cuda.is_available() else None


class RecipeStep:
    """The recipe's set-up of one row: config → method → attach → TrainingArguments → Trainer → optimizer, compile."""

    def __init__(self, row: str, compiled: bool, args: argparse.Namespace, batch: torch.Tensor, run_dir: Path):
        from transformers import Trainer

        from spectune.config import method_kwargs, validate
        from spectune.methods import build_method
        from spectune.methods.base import PretrainedParameters
        from spectune.training.recipe import training_arguments

        cfg = compose(overrides(row, compiled, args))
        validate(cfg)
        self.args, self.device = args, args.device
        self.method = build_method(cfg.method.name, **method_kwargs(cfg))  # as recipe.setup_model
        base = build_model(args)
        pretrained = PretrainedParameters(base)  # as recipe.setup_model: counted against the pretrained model
        t0 = time.perf_counter()
        self.model = self.method.attach(base, "CAUSAL_LM")
        self.attach_s = time.perf_counter() - t0
        self.param_counts = pretrained.counts(self.model)
        targs = training_arguments(cfg, run_dir)
        if compiled:
            targs.torch_compile_backend = args.compile_backend
        self.trainer = Trainer(model=self.model, args=targs)
        self.trainer.current_gradient_accumulation_steps = targs.gradient_accumulation_steps  # set by train()
        self.optimizer = self.trainer.create_optimizer()
        # What Trainer.train does to the model before its loop: autocast (bf16) and torch.compile (train.compile).
        self.wrapped = self.trainer.accelerator.prepare_model(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.inputs = {"input_ids": batch, "labels": batch}
        self.max_grad_norm = cfg.train.max_grad_norm
        self.steps_done = 0

    def step(self) -> torch.Tensor:
        loss = self.trainer.training_step(self.wrapped, self.inputs)
        self.trainer.accelerator.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return loss


class FloorStep:
    """The frozen model: forward + backward of the activation gradients only (embeddings' output requires grad),
    wrapped as the method rows are (the Trainer's ``accelerator.prepare_model``: autocast, fp32 outputs, compile)."""

    def __init__(self, compiled: bool, args: argparse.Namespace, batch: torch.Tensor, run_dir: Path):
        from transformers import Trainer

        from spectune.methods.base import PretrainedParameters
        from spectune.training.recipe import training_arguments

        self.model = build_model(args)
        self.model.requires_grad_(False)
        self.model.get_input_embeddings().register_forward_hook(lambda m, i, out: out.requires_grad_())
        self.model.train()
        targs = training_arguments(compose(overrides("full", compiled, args)), run_dir)
        if compiled:
            targs.torch_compile_backend = args.compile_backend
        self.wrapped = Trainer(model=self.model, args=targs).accelerator.prepare_model(self.model)
        self.batch, self.params, self.attach_s = batch, [], 0.0
        self.param_counts = PretrainedParameters(self.model).counts(self.model)  # (0, the model's parameters)

    def step(self) -> torch.Tensor:
        loss = self.wrapped(input_ids=self.batch, labels=self.batch).loss
        loss.backward()
        return loss.detach()


def run_row(row: str, compiled: bool, args: argparse.Namespace, batch: torch.Tensor, run_dir: Path) -> dict[str, Any]:
    """Build, warm up, (switch), time, (unload): the row's record for the JSON."""
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()
    runner: FloorStep | RecipeStep = (FloorStep(compiled, args, batch, run_dir) if row == "floor"
                                      else RecipeStep(row, compiled, args, batch, run_dir))
    trainable, total = runner.param_counts
    rec: dict[str, Any] = {"row": row, "mode": "compiled" if compiled else "eager", "trainable_params": trainable,
                           "total_params": total, "torch_compiled": hasattr(runner.wrapped, "_orig_mod")}
    if isinstance(runner, RecipeStep):  # what the recipe's Trainer built (train.optimizer)
        opt = runner.optimizer
        opt = getattr(opt, "optimizer", opt)  # accelerate's wrapper
        rec["optimizer"] = {"class": type(opt).__name__, "fused": bool(opt.defaults.get("fused")),
                            "foreach": opt.defaults.get("foreach")}
    if row == "svf":
        rec["attach_s"] = round(runner.attach_s, 3)
    before = fingerprint(runner.params) if runner.params else None
    first, warm_losses = timed_steps(runner.step, 1, args.device)
    rec["first_step_s"] = round(first[0] / 1e3, 3)  # compilation included
    _, more = timed_steps(runner.step, args.warmup - 1, args.device)
    warm_losses += more
    if row == "lora_dash":
        switched, switch_ms = timed_call(args.device, lambda: runner.method.switch(runner.model))
        rec["switch_ms"] = round(switch_ms, 3)
        rec["switched_layers"] = len(switched)
        _, more = timed_steps(runner.step, args.warmup, args.device)  # δ's first steps (recompiles once)
        warm_losses += more
    setup_peak = 0
    if cuda:
        setup_peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    ms, losses = timed_steps(runner.step, args.steps, args.device)
    rec["peak_mib"] = cuda_mib("max_memory_allocated")
    rec["ms_per_step"] = round(statistics.median(ms), 3)
    rec["ms_per_step_all"] = [round(x, 3) for x in ms]
    rec["tokens_per_s"] = round(args.batch * args.seq / (rec["ms_per_step"] / 1e3), 1)
    if before is not None:
        rec["params_changed"] = int((before != fingerprint(runner.params)).any(dim=1).sum())
    rec["param_tensors"] = len(runner.params)
    if args.profile_steps:  # after the timed steps and before any unload: the profiled step is an ordinary one
        rec["step_profile"] = profile_step(args.device, runner.step)
    if row == "lora_dash":
        from spectune.methods.lora_dash import DELTA, dash_layers

        rec["dash_delta_abs_sum"] = float(sum(getattr(layer, DELTA)["default"].detach().abs().sum().item()
                                              for _, layer in dash_layers(runner.model)))
    if row == "plora":
        # Two stage boundaries, each followed by a training step: the first unload is the run's first (cold: kernels
        # and allocator segments met for the first time), the second is what every later stage pays; a run of S stages
        # pays one of the first kind and S-1 of the second, so the warm one is amortised over --plora-stage steps.
        times = []
        for _ in range(2):
            stage, unload_ms = timed_call(args.device, lambda: runner.method.unload(
                runner.model, runner.steps_done, runner.optimizer, reason="benchmark"))
            times.append(unload_ms)
            _, after_unload = timed_steps(runner.step, 1, args.device)  # training goes on after the boundary
            losses += after_unload
        if args.profile_unload:
            rec["unload_profile"] = profile_call(args.device, lambda: runner.method.unload(
                runner.model, runner.steps_done, runner.optimizer, reason="benchmark"))
        rec["unload_ms_first"] = round(times[0], 3)
        rec["unload_ms"] = round(times[1], 3)
        rec["unload_merged_norm"] = stage["merged_norm"]
        rec["unload_layers"] = stage["layers"]
        rec["plora_stage_steps"] = args.plora_stage
        rec["ms_per_step_amortised"] = round(rec["ms_per_step"] + rec["unload_ms"] / args.plora_stage, 3)
    rec["peak_overall_mib"] = round(max(setup_peak, torch.cuda.max_memory_allocated()) / MIB, 1) if cuda else None
    rec["losses"] = [round(x, 5) for x in warm_losses + losses]
    rec["loss_finite"] = all(math.isfinite(x) for x in rec["losses"])
    rec["trained"] = rec["loss_finite"] and (row == "floor" or rec["params_changed"] > 0)
    return rec


def free_memory(device: str) -> None:
    """Drop what the last row left (PEFT models hold reference cycles) before the next one is measured."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------- report
def tf32_setting() -> str:
    """cuBLAS's fp32 matmul setting, read through whichever API set it (torch refuses ``allow_tf32`` once the new
    ``fp32_precision`` API was used, e.g. by torch.compile, and the run must not fail on a record)."""
    matmul = torch.backends.cuda.matmul
    for name in ("fp32_precision", "allow_tf32"):
        try:
            return f"{name}={getattr(matmul, name)}"
        except (AttributeError, RuntimeError):
            continue
    return "unknown"


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
        "tf32_matmul": tf32_setting(),
        "git": git,
        "command": shlex.join([sys.executable, *([sys.argv[0]] if argv is None else ["benchmarks/step_time.py"]),
                               *(sys.argv[1:] if argv is None else argv)]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }



def add_ratios(rows: dict[str, dict[str, Any]]) -> None:
    """``ratio_vs_floor`` (compiled floor, else eager), ``peak_vs_floor_mib``, ``ratio_vs_peft_lora`` (same mode)."""
    floor = next((rows[k] for k in ("floor+compiled", "floor") if k in rows and "error" not in rows[k]), None)
    for rec in rows.values():
        if "error" in rec:
            continue
        ms = rec.get("ms_per_step_amortised", rec["ms_per_step"])
        rec["ratio_vs_floor"] = round(ms / floor["ms_per_step"], 3) if floor else None
        rec["peak_vs_floor_mib"] = (round(rec["peak_mib"] - floor["peak_mib"], 1)
                                    if floor and rec.get("peak_mib") is not None and floor.get("peak_mib") else None)
        ref = rows.get("peft_lora" + ("+compiled" if rec["mode"] == "compiled" else ""))
        rec["ratio_vs_peft_lora"] = round(ms / ref["ms_per_step"], 3) if ref and "error" not in ref else None


def markdown(result: dict[str, Any]) -> str:
    env, cfg = result["environment"], result["config"]

    def f(x: Any, nd: int = 1) -> str:
        return "—" if x is None else (f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}")

    lines = [
        f"Step time, {cfg['model']} ({cfg['shape']}), batch {cfg['batch']} × seq {cfg['seq']}, {cfg['precision']}, "
        f"r={cfg['r']}, dropout {cfg['dropout']}, targets {cfg['targets']} — {env['device']}, torch {env['torch']}, "
        f"transformers {env['transformers']}, peft {env['peft']}, "
        f"commit {(env['git'] or {}).get('commit') or 'unknown'}"
        + (f"; recipe overrides {', '.join(cfg['train_set'])}" if cfg.get("train_set") else ""),
        "",
        "| row | mode | ms/step | × floor | × PEFT LoRA | peak MiB | peak − floor MiB | first step s | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rec in result["methods"].values():
        if "error" in rec:
            lines.append(f"| {rec['row']} | {rec['mode']} | — | — | — | — | — | — | **failed**: "
                         f"{rec['error'][:200].replace('|', '/').replace(chr(10), ' ')} |")
            continue
        notes = []
        if "switch_ms" in rec:
            notes.append(f"after the switch (switch {rec['switch_ms']:,.0f} ms)")
        if "unload_ms" in rec:
            first = rec.get("unload_ms_first", rec["unload_ms"])
            notes.append(f"unload {rec['unload_ms']:,.0f} ms (first {first:,.0f} ms) amortised over "
                         f"{rec['plora_stage_steps']} steps: "
                         f"{rec['ms_per_step_amortised']:,.2f} ms/step (× floor uses it)")
        if rec.get("unload_profile"):
            notes.append("unload's top operators (self CPU / device ms): " + ", ".join(
                f"{r['op']} {r['self_cpu_ms']:,.1f}/{r['self_device_ms']:,.1f}" for r in rec["unload_profile"][:3]))
        if "attach_s" in rec:
            notes.append(f"attach (SVDs) {rec['attach_s']:,.1f} s")
        if not rec["trained"]:
            notes.append("**did not train**")
        lines.append(f"| {rec['row']} | {rec['mode']} | {f(rec['ms_per_step'], 2)} | {f(rec['ratio_vs_floor'], 3)} "
                     f"| {f(rec['ratio_vs_peft_lora'], 3)} | {f(rec['peak_mib'])} | {f(rec['peak_vs_floor_mib'])} "
                     f"| {f(rec['first_step_s'], 1)} | {'; '.join(notes)} |")
    profiled = [rec for rec in result["methods"].values() if rec.get("step_profile")]
    if profiled:
        cats = [c for c, _ in KERNEL_CATEGORIES] + ["other"]
        lines += ["", f"One profiled step per row ({profiled[0]['step_profile']['kind']}, ms; torch.profiler after the "
                  "timed steps, so a little slower than ms/step):", "",
                  "| row | mode | total | " + " | ".join(cats) + " | launches |",
                  "| --- | --- | ---: | " + " | ".join("---:" for _ in cats) + " | ---: |"]
        for rec in profiled:
            prof = rec["step_profile"]
            lines.append(f"| {rec['row']} | {rec['mode']} | {f(prof['total_ms'], 2)} | " + " | ".join(
                f(prof["by_category_ms"].get(c, 0.0), 2) for c in cats) + f" | {prof['launches']:,} |")
    lines.append("")
    lines.append(f"median of {cfg['steps']} timed steps after {cfg['warmup']} warm-up steps; × floor = ms/step over "
                 "the compiled floor's; peak = torch.cuda.max_memory_allocated over the timed steps.")
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
    shape = {"hidden": mc.hidden_size, "intermediate": mc.intermediate_size, "heads": mc.num_attention_heads,
             "kv_heads": mc.num_key_value_heads, "layers": mc.num_hidden_layers, "vocab": mc.vocab_size}
    g = torch.Generator().manual_seed(args.seed)
    batch = torch.randint(0, mc.vocab_size, (args.batch, args.seq), generator=g).to(args.device)

    rows: dict[str, dict[str, Any]] = {}
    old_cache = os.environ.get("SPECTUNE_CACHE")
    with tempfile.TemporaryDirectory(prefix="step_time_") as tmp:
        os.environ["SPECTUNE_CACHE"] = args.svd_cache or str(Path(tmp) / "cache")  # cold, then warm
        try:
            for row in args.rows:
                for mode in args.modes:
                    key = row + ("+compiled" if mode == "compiled" else "")
                    print(f"[step_time] {key} ...", file=sys.stderr, flush=True)
                    try:
                        rows[key] = run_row(row, mode == "compiled", args, batch, Path(tmp) / key)
                    except Exception as err:  # recorded; the other rows still run (a recipe override can fail)
                        traceback.print_exc()
                        rows[key] = {"row": row, "mode": mode, "error": f"{type(err).__name__}: {err}"[:2000]}
                        print(f"[step_time] {key}: FAILED, {rows[key]['error'][:300]}", file=sys.stderr, flush=True)
                        free_memory(args.device)
                        continue
                    free_memory(args.device)
                    rec = rows[key]
                    peak = "" if rec["peak_mib"] is None else f", peak {rec['peak_mib']:,.0f} MiB"
                    print(f"[step_time] {key}: {rec['ms_per_step']:.2f} ms/step{peak}, first step "
                          f"{rec['first_step_s']:.1f} s, trained={rec['trained']}", file=sys.stderr, flush=True)
        finally:
            if old_cache is None:
                os.environ.pop("SPECTUNE_CACHE", None)
            else:
                os.environ["SPECTUNE_CACHE"] = old_cache
    torch._dynamo.reset()
    add_ratios(rows)
    config = {k: v for k, v in vars(args).items() if k not in {"out", "git_commit"}}
    config["shape"] = ", ".join(f"{k} {v}" for k, v in shape.items())
    config["model_shape"] = shape
    config["precision_detail"] = {
        "bf16-autocast": "fp32 weights; train.precision=bf16 (the Trainer's bf16 autocast)",
        "bf16": "bf16 weights (PEFT's adapters fp32); train.precision=bf16 (the Trainer's bf16 autocast)",
        "fp32": "fp32 weights, train.precision=fp32",
    }[args.precision]
    config["batch_data"] = f"random token ids, uniform over the vocabulary (seed {args.seed}), labels = inputs"
    result = {"environment": environment(args, argv), "config": config, "methods": rows}
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
