"""What a full reproduction costs before launching it: GPU-hours and peak memory per cell of every paper table at
``scale=paper``, extrapolated from the step times measured on real GPUs (benchmarks/results/*.json).

    python -m experiments.cost_model                    # every paper table, one seed, markdown on stdout
    python -m experiments.cost_model --seeds 3 --experiments table2_glue_paper

Method (README, "What a sweep costs"). Every number is an extrapolation, labelled as such:

* **Measurements.** ``step_time_*.json`` (benchmarks/step_time.py: full / lora / lora_dash / plora on a random-init
  LLaMA-7B-shaped model cut to a few layers, AdamW, bf16 autocast over fp32 weights) — per method the newest file
  by its recorded time; PLoRA's time is amortised over its unload; LoRA-Dash's is after its switch (the one-time SVD
  is left out). ``svf_step_time_*.json`` (benchmarks/svf_step_time.py: SVF on LLaMA-3-8B's shapes, bf16 weights,
  eager — the trainer does not compile) gives SVF's.
* **Step time** scales with the matmul parameters each token passes through (the 6·N rule's N: every layer's
  projections plus the LM head; attention scores, norms and the embedding lookup left out: at ≤ 512 tokens they are
  small) and with the tokens per optimizer step: ``t = t_measured × (N_cell / N_measured) × (tokens_cell /
  tokens_measured)``. Tokens per step take every sequence at ``train.max_length`` (the collator pads to the longest
  of a batch, so this is an upper bound). The measured GPU is used as is for an H200 (a guess: same dense bf16
  compute as the H100, more memory bandwidth).
* **Steps** per cell: ``ceil(n_train / (batch × grad_accum)) × epochs`` with the full training sets' sizes
  (:data:`TRAIN_SIZES`, the datasets' published sizes; commonsense_170k for LLM-Adapters' mixture).
* **Peak memory** (one GPU, no ZeRO sharding) = static + activations. Static is counted: frozen weights in the
  model's dtype; trainable weights with gradients and AdamW's two states in their own dtype (adapters fp32: 16
  bytes per parameter; full fine-tuning in the model's dtype, as torch's AdamW keeps its states in the parameter's
  dtype). Activations = measured peak − measured static, per token and per layer width (``layers × (hidden +
  intermediate)``), scaled to the cell's micro-batch tokens; the logits' share is not separated (a guess).
* **Not modelled** (marked in the table): Transformer²'s rollouts (REINFORCE's generation time was not measured:
  only the policy-gradient passes are costed, so those cells are lower bounds) and Table 2's inference-only rows;
  evaluation after training; multi-GPU efficiency (a cell's GPU-hours are the same on more GPUs if they scale
  ideally; benchmarks/results/deepspeed_2gpu_8b3f2aa.json and deepspeed_2gpu_88207fa.json measured 1.39–2.03× on 2
  GPUs at a small step, 7k tokens through 4 layers, so up to 1.44× more GPU-hours there, and
  deepspeed_2gpu_batch32_88207fa.json 1.80–1.98× at 14k tokens; 8 GPUs not measured; not applied to the table).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
GIB = 1024**3
MIB = 1024**2
# The GPU the table is for: memory per device (NVIDIA H200, 141 GB = 131 GiB usable as reported by torch ~139 GiB).
GPU_NAME = "H200"
GPU_GIB = 139.0
PAPER_EXPERIMENTS = ("table1_commonsense_paper", "table2_glue_paper", "plora_paper", "t2_table1_paper",
                     "t2_table2_paper")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """A transformer's matmul shapes (public model configs)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    gated_mlp: bool = True  # LLaMA / Mistral: gate, up, down; BERT-style encoders: up, down
    lm_head: bool = True  # causal LMs: the head over the vocabulary is a matmul every token passes

    def layer_matrices(self) -> dict[str, tuple[int, int]]:
        """(d_out, d_in) of each projection of one layer, by its LLaMA name (encoders use the same roles)."""
        kv = self.hidden * self.kv_heads // self.heads
        out = {"q_proj": (self.hidden, self.hidden), "k_proj": (kv, self.hidden), "v_proj": (kv, self.hidden),
               "o_proj": (self.hidden, self.hidden), "up_proj": (self.intermediate, self.hidden),
               "down_proj": (self.hidden, self.intermediate)}
        if self.gated_mlp:
            out["gate_proj"] = (self.intermediate, self.hidden)
        return out

    def matmul_params_per_token(self) -> int:
        """N of the 6·N rule: the projections' weights of every layer, plus the LM head."""
        per_layer = sum(o * i for o, i in self.layer_matrices().values())
        return self.layers * per_layer + (self.hidden * self.vocab if self.lm_head else 0)

    def total_params(self) -> int:
        """Weights (projections, embeddings, an untied head; norms and biases left out)."""
        per_layer = sum(o * i for o, i in self.layer_matrices().values())
        return self.layers * per_layer + self.hidden * self.vocab * (2 if self.lm_head else 1)

    def activation_width(self) -> int:
        """What activation memory per token is taken to grow with: layers × (hidden + intermediate)."""
        return self.layers * (self.hidden + self.intermediate)


# The papers' models (their Hugging Face configs).
SHAPES: dict[str, Shape] = {
    "llama_7b": Shape(32, 4096, 11008, 32, 32, 32000),
    "llama2_7b": Shape(32, 4096, 11008, 32, 32, 32000),
    "llama3_8b": Shape(32, 4096, 14336, 32, 8, 128256),
    "llama3_8b_instruct": Shape(32, 4096, 14336, 32, 8, 128256),
    "mistral_7b_instruct": Shape(32, 4096, 14336, 32, 8, 32768),
    "deberta_v3_base": Shape(12, 768, 3072, 12, 12, 128100, gated_mlp=False, lm_head=False),
    "deberta_v3_large": Shape(24, 1024, 4096, 16, 16, 128100, gated_mlp=False, lm_head=False),
}
# Encoder module names of the same roles (DeBERTa): counted through LLaMA's names.
ROLE = {"query_proj": "q_proj", "key_proj": "k_proj", "value_proj": "v_proj", "attention.output.dense": "o_proj",
        "intermediate.dense": "up_proj", "output.dense": "down_proj"}
# Training examples of the full training sets (the datasets' published sizes).
TRAIN_SIZES: dict[str, int] = {
    "commonsense": 170_420,  # LLM-Adapters' commonsense_170k
    "mnli": 392_702, "sst2": 67_349, "cola": 8_551, "qqp": 363_846, "qnli": 104_743, "rte": 2_490, "mrpc": 3_668,
    "stsb": 5_749,
}


@dataclass(frozen=True)
class Measurement:
    """One method's measured step on a GPU."""

    method: str
    device: str
    shape: Shape
    tokens: int  # per optimizer step (batch × seq)
    ms_per_step: float
    static_mib: float  # memory held before the timed steps (weights, optimizer state)
    peak_mib: float
    source: str

    @property
    def activation_mib(self) -> float:
        return self.peak_mib - self.static_mib


def _shape_of(model_shape: dict[str, Any]) -> Shape:
    return Shape(int(model_shape["layers"]), int(model_shape["hidden"]), int(model_shape["intermediate"]),
                 int(model_shape["heads"]), int(model_shape.get("kv_heads") or model_shape["heads"]),
                 int(model_shape["vocab"]))


def load_measurements(results: Path = RESULTS) -> dict[str, Measurement]:
    """The measurement used for each method (newest ``step_time_*.json`` per method; SVF from
    ``svf_step_time_*.json``'s eager row). Raises ``FileNotFoundError`` naming the folder when it holds none.

    Only eager rows that record the memory held before the timed steps (``allocated_before_timed_mib``) are used: the
    extrapolation splits static memory (weights, optimizer state) from activations. Later files of
    ``benchmarks/step_time.py`` (rows ``<method>+<mode>``, compiled rows, peak over the floor instead) lack it and
    are skipped, so the cost model stays on the eager recipe it describes."""
    found: dict[str, tuple[str, Measurement]] = {}
    for path in sorted(results.glob("step_time_*.json")):
        data = json.loads(path.read_text())
        env, cfg = data["environment"], data["config"]
        shape = _shape_of(cfg["model_shape"])
        for method, m in data["methods"].items():
            if "allocated_before_timed_mib" not in m or m.get("mode", "eager") != "eager":
                continue
            ms = m.get("ms_per_step_amortised") or m["ms_per_step"]
            meas = Measurement(method, env["device"], shape, int(cfg["batch"]) * int(cfg["seq"]), float(ms),
                               float(m["allocated_before_timed_mib"]), float(m["peak_mib"]), path.name)
            if method not in found or env["time"] >= found[method][0]:
                found[method] = (env["time"], meas)
    out = {method: meas for method, (_, meas) in found.items()}
    for path in sorted(results.glob("svf_step_time_*.json")):
        data = json.loads(path.read_text())
        a = data["args"]
        shape = Shape(int(a["layers"]), int(a["hidden"]), int(a["intermediate"]), int(a["heads"]),
                      int(a["kv_heads"]), int(a["vocab"]))
        row = next(v for k, v in data["rows"].items() if k.startswith("SVF") and k.endswith("eager"))
        static = shape.total_params() * 2 / MIB  # bf16 weights; SVF's z vectors are negligible
        out["svf"] = Measurement("svf", data["device"], shape, int(a["batch"]) * int(a["seq"]), row["ms_per_step"],
                                 static, row["peak_gib"] * 1024, path.name)
    if not out:
        raise FileNotFoundError(f"no step-time measurements in {results} (benchmarks/step_time.py writes them).")
    return out


@dataclass(frozen=True)
class Cell:
    """What the cost of one cell depends on (read from its composed config)."""

    experiment: str
    model: str
    method: str
    label: str
    task: str
    n_train: int | None
    epochs: float
    batch: int
    grad_accum: int
    max_length: int
    model_dtype: str
    targets: tuple[str, ...]
    rank: int | None
    objective: str
    rl_iterations: int = 0
    rl_prompts: int = 0
    rl_new_tokens: int = 0


@dataclass(frozen=True)
class Cost:
    cell: Cell
    steps: int | None
    tokens_per_step: int | None
    s_per_step: float | None
    gpu_hours: float | None
    peak_gib: float | None
    note: str


def trainable_params(cell: Cell, shape: Shape) -> int:
    """Parameters trained: all for full fine-tuning; r·(d_in + d_out) per adapted matrix for LoRA, LoRA-Dash (its
    s-vector is negligible) and PLoRA; SVF: min(d_in, d_out) per adapted matrix."""
    if cell.method == "full":
        return shape.total_params()
    mats = shape.layer_matrices()
    total = 0
    for target in cell.targets:
        d_out, d_in = mats[ROLE.get(target, target)]
        total += (min(d_out, d_in) if cell.method == "svf" else (cell.rank or 0) * (d_out + d_in))
    return total * shape.layers


def peak_memory_gib(cell: Cell, shape: Shape, meas: Measurement, micro_tokens: int) -> float:
    """Static (counted) + activations (measured per token and layer width, scaled)."""
    wbytes = DTYPE_BYTES[cell.model_dtype]
    n_train = trainable_params(cell, shape)
    if cell.method == "full":
        static = shape.total_params() * wbytes * 4  # weight, gradient, AdamW's two states
    else:
        static = shape.total_params() * wbytes + n_train * 16  # fp32 adapter: weight, grad, two states
    act_per = meas.activation_mib * MIB / (meas.tokens * meas.shape.activation_width())
    return (static + act_per * micro_tokens * shape.activation_width()) / GIB


def cell_cost(cell: Cell, measurements: dict[str, Measurement]) -> Cost:
    """The extrapolated cost of one cell (see the module's docstring for the method)."""
    shape = SHAPES.get(cell.model)
    meas = measurements.get(cell.method)
    if shape is None or meas is None:
        missing = "model shape" if shape is None else "step-time measurement"
        return Cost(cell, None, None, None, None, None, f"no {missing} for {cell.model}/{cell.method}")
    note = ""
    if cell.objective == "reinforce":
        steps = cell.rl_iterations
        tokens = cell.rl_prompts * (cell.max_length + cell.rl_new_tokens)
        micro = cell.batch * (cell.max_length + cell.rl_new_tokens)
        note = "policy-gradient passes only; rollouts' generation not measured: lower bound"
    else:
        n = cell.n_train if cell.n_train is not None else TRAIN_SIZES.get(cell.task)
        if n is None:
            return Cost(cell, None, None, None, None, None, f"training-set size of {cell.task} unknown")
        steps = math.ceil(math.ceil(n / (cell.batch * cell.grad_accum)) * cell.epochs)
        tokens = cell.batch * cell.grad_accum * cell.max_length
        micro = cell.batch * cell.max_length
    ratio_n = shape.matmul_params_per_token() / meas.shape.matmul_params_per_token()
    s_step = meas.ms_per_step / 1000 * ratio_n * tokens / meas.tokens
    peak = peak_memory_gib(cell, shape, meas, micro)
    if peak > GPU_GIB:
        note = "; ".join(x for x in (note, f"> one {GPU_NAME}: a smaller train.batch_size × train.grad_accum cuts "
                                     "activations, ZeRO-3 shards weights and optimizer state") if x)
    if meas.shape != SHAPES.get(cell.model) and not shape.lm_head:
        note = "; ".join(x for x in (note, "encoder from decoder measurements: rough") if x)
    return Cost(cell, steps, tokens, s_step, steps * s_step / 3600, peak, note)


def cells_of(experiment: str) -> list[Cell]:
    """The cells of a paper experiment, from its grids (experiments.grids: the jobs ``-m`` launches)."""
    from experiments.grids import cell_configs

    out = []
    for cfg in cell_configs(experiment, drop=("seed",)):
        t, m = cfg.train, cfg.method
        targets = m.get("target_modules") or cfg.model.target_modules[m.get("targets", "default")]
        if isinstance(targets, str):  # a regex (SVF's mlp set): the MLP projections
            gated = SHAPES.get(str(cfg.model.name), SHAPES["llama_7b"]).gated_mlp
            targets = ["gate_proj", "up_proj", "down_proj"] if gated else ["up_proj", "down_proj"]
        rl = t.get("rl") or {}
        out.append(Cell(experiment, str(cfg.model.name), str(m.name), str(m.label), str(cfg.task.name),
                        cfg.task.get("n_train"), float(t.epochs), int(t.batch_size), int(t.grad_accum),
                        int(t.max_length), str(cfg.model.dtype), tuple(str(x) for x in targets), m.get("r"),
                        str(t.get("objective", "next_token")), int(rl.get("iterations", 0) or 0),
                        int(rl.get("batch_prompts", 0) or 0), int(cfg.eval.get("max_new_tokens") or 0)))
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def report(experiments: Sequence[str], seeds: int, measurements: dict[str, Measurement]) -> str:
    """Markdown: the measurements used, then one table per experiment (cells, their cost, the total)."""
    lines = [f"Extrapolated cost at scale=paper ({seeds} seed{'s' if seeds > 1 else ''}; one {GPU_NAME}-equivalent "
             "GPU per cell; python -m experiments.cost_model). Measurements used:", ""]
    for method, m in sorted(measurements.items()):
        lines.append(f"- {method}: {m.ms_per_step:.1f} ms/step, peak {m.peak_mib / 1024:.1f} GiB, "
                     f"{m.shape.layers} layers (hidden {m.shape.hidden}, intermediate {m.shape.intermediate}), "
                     f"{m.tokens} tokens/step, {m.device} — {m.source}")
    for experiment in experiments:
        try:
            cells = cells_of(experiment)
        except FileNotFoundError:  # no grid: nothing is trained (t2_table2: scoring and spectune.adapt)
            lines += ["", f"### {experiment}", "", "Trains nothing (scoring and `spectune.adapt` over Table 1's runs): "
                      "inference cost not modelled (no generation throughput measured)."]
            continue
        costs = [cell_cost(c, measurements) for c in cells]
        lines += ["", f"### {experiment} ({len(cells)} cells × {seeds} seed{'s' if seeds > 1 else ''})", "",
                  "| model | method | task | steps | tokens/step | s/step (extrap.) | GPU-h per seed (extrap.) "
                  "| peak GiB (extrap.) | note |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
        for c in costs:
            lines.append(f"| {c.cell.model} | {c.cell.label} | {c.cell.task} | {c.steps or '–'} | "
                         f"{c.tokens_per_step or '–'} | {_fmt(c.s_per_step, 2)} | {_fmt(c.gpu_hours)} | "
                         f"{_fmt(c.peak_gib)} | {c.note} |")
        known = [c.gpu_hours for c in costs if c.gpu_hours is not None]
        unknown = len(costs) - len(known)
        peak = max((c.peak_gib for c in costs if c.peak_gib is not None), default=None)
        lines.append(f"| **total** | | | | | | **{_fmt(sum(known) * seeds)}**{' + not modelled' if unknown else ''}"
                     f" | max {_fmt(peak)} | {unknown} cell(s) not modelled |" if unknown else
                     f"| **total** | | | | | | **{_fmt(sum(known) * seeds)}** | max {_fmt(peak)} | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cost_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default=",".join(PAPER_EXPERIMENTS),
                   help="comma-separated conf/experiment names (default: every paper table)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the step-time JSONs")
    args = p.parse_args(argv)
    try:
        measurements = load_measurements(args.results)
    except FileNotFoundError as err:
        print(f"cost_model: error: {err}", file=sys.stderr)
        return 2
    print(report([e for e in args.experiments.split(",") if e], args.seeds, measurements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
