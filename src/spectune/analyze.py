"""``python -m spectune.analyze``: task-specific directions (LoRA-Dash, Si et al. 2024) of any PEFT LoRA adapter.

For every adapted matrix W = U Σ Vᵀ and the adapter's update ΔW = s·B A (never formed densely), the change rate of
each core direction u_i v_iᵀ is δ_i = |u_iᵀ ΔW v_i| / σ_i. The command reports per matrix the top-k directions
(LoRA's "predicted" TSD), where they sit in the spectrum (index / min(d_out, d_in)), and — given a full
fine-tuning run as the reference ΔW* = W* − W — the paper's overlaps: recall = share of the true top-4 inside the
predicted top-8, accuracy = share of the predicted top-8 inside the true top-16.

Examples::

    python -m spectune.analyze runs/single/minilm/lora-r8/sst2/seed0
    python -m spectune.analyze runs/.../lora-r8/sst2/seed0 --reference runs/.../full/sst2/seed0 --plot query
    python -m spectune.analyze path/to/adapter --base smollm2 --kind causal_lm

Writes ``<out>/tsd_analysis.json`` (per matrix: top indices, their σ and rates, positions, overlaps, and the full
rate profile) and, with ``--plot``, a PNG of one matrix's change-rate profile. ``--out`` defaults to
``<run folder>/analysis`` (or ``./analysis``); an existing analysis file is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from spectune.spectral import SVDCache, change_rates, change_rates_lowrank, top_directions, tsd_overlap


@dataclass
class AdapterSource:
    """Where the adapter, its base model and (optionally) the run's config come from."""

    adapter_dir: Path
    base: str
    kind: str
    num_labels: int | None
    num_layers: int | None
    run_dir: Path | None


def resolve_source(path: Path, base: str | None, kind: str | None, num_labels: int | None) -> AdapterSource:
    """Accept a run folder (config.yaml + adapter/) or a bare PEFT adapter folder."""
    if (path / "config.yaml").exists() and (path / "adapter" / "adapter_config.json").exists():
        cfg = yaml.safe_load((path / "config.yaml").read_text())
        from spectune.data.tasks import get_task

        family = cfg["model"]["family"]
        k = "causal_lm" if family == "causal_lm" else "sequence_classification"
        labels = get_task(cfg["task"]["name"]).num_labels if k == "sequence_classification" else None
        return AdapterSource(path / "adapter", base or cfg["model"]["name_or_path"], kind or k, num_labels or labels,
                             cfg["model"].get("num_layers"), path)
    if not (path / "adapter_config.json").exists():
        raise SystemExit(f"{path} is neither a run folder (config.yaml + adapter/) nor a PEFT adapter folder "
                         "(adapter_config.json). Point to one of them.")
    acfg = json.loads((path / "adapter_config.json").read_text())
    if acfg.get("peft_type") != "LORA":
        raise SystemExit(f"{path} holds a {acfg.get('peft_type')} adapter; this analysis needs LoRA factors B, A.")
    task_type = acfg.get("task_type") or "CAUSAL_LM"
    k = kind or ("sequence_classification" if task_type == "SEQ_CLS" else "causal_lm")
    if k == "sequence_classification" and num_labels is None:
        raise SystemExit("A sequence-classification adapter needs --num-labels (the head's size).")
    return AdapterSource(path, base or acfg.get("base_model_name_or_path"), k, num_labels, None, None)


def lora_factors(adapter_dir: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float | dict[str, float]]:
    """Per adapted module name (as in the base model): (B, A), and the scale s = α/r (α/√r with rsLoRA)."""
    from safetensors.torch import load_file

    try:
        acfg = json.loads((adapter_dir / "adapter_config.json").read_text())
        state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    except Exception as err:  # missing, truncated or hand-edited files (SafetensorError is no OSError)
        raise SystemExit(f"spectune.analyze: error: {adapter_dir} is not a readable PEFT adapter "
                         f"({type(err).__name__}: {err}). Is the run finished? Re-run or resume it to rewrite "
                         "adapter/.") from None
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                name = key.split(marker)[0].removeprefix("base_model.model.")
                factors.setdefault(name, {})[part] = tensor
    r, alpha = acfg["r"], acfg["lora_alpha"]
    rank_pattern, alpha_pattern = acfg.get("rank_pattern") or {}, acfg.get("alpha_pattern") or {}
    scales: dict[str, float] = {}
    for name in factors:
        rr = next((v for k, v in rank_pattern.items() if name.endswith(k)), r)
        aa = next((v for k, v in alpha_pattern.items() if name.endswith(k)), alpha)
        scales[name] = aa / math.sqrt(rr) if acfg.get("use_rslora") else aa / rr
    pairs = {n: (f["lora_B"], f["lora_A"]) for n, f in factors.items() if "lora_A" in f and "lora_B" in f}
    if not pairs:
        raise SystemExit(f"No LoRA factors in {adapter_dir / 'adapter_model.safetensors'}.")
    return pairs, scales


def reference_weights(reference: Path) -> dict[str, torch.Tensor]:
    """Weights W* of a full fine-tuning run (its ``merged/``) or of a model folder, by module name."""
    from spectune.errors import UserError
    from spectune.training.tsd_tracking import reference_state

    try:
        return reference_state(reference)
    except (FileNotFoundError, UserError) as err:
        raise SystemExit(f"spectune.analyze: error: {err}") from None


def reference_weights_check(reference: Path) -> None:
    """Refuse, before any model loads, a reference run that is not full fine-tuning."""
    from spectune.errors import UserError
    from spectune.training.tsd_tracking import check_reference_method

    try:
        check_reference_method(reference)
    except UserError as err:
        raise SystemExit(f"spectune.analyze: error: {err}") from None


def analyze(src: AdapterSource, reference: Path | None = None, top: int = 8, dtype: torch.dtype = torch.float64,
            cache: SVDCache | None = None) -> dict[str, Any]:
    """Change-rate profile and TSD statistics of every adapted matrix; overlaps against ``reference`` if given."""
    from tqdm.auto import tqdm

    from spectune.models import load_model_and_tokenizer

    base, _ = load_model_and_tokenizer(src.base, src.kind, num_labels=src.num_labels, num_layers=src.num_layers)
    modules = dict(base.named_modules())
    pairs, scales = lora_factors(src.adapter_dir)
    ref = reference_weights(reference) if reference is not None else None
    cache = cache or SVDCache(dtype=dtype)  # a float64 analysis needs float64 singular vectors, not cast fp32 ones
    out: dict[str, Any] = {}
    for name, (B, A) in tqdm(sorted(pairs.items()), desc="matrices", unit="matrix"):
        if name not in modules:
            raise SystemExit(f"Adapter module {name} is not in the base model {src.base}: wrong --base?")
        W = modules[name].weight.detach().float()
        factors = cache.get(src.base, f"{name}.weight", W)
        rates = change_rates_lowrank(W, B.float(), A.float(), scales[name], dtype=dtype, svd=factors)
        k = min(top, rates.numel())
        idx = top_directions(rates, k)
        n = rates.numel()
        entry: dict[str, Any] = {
            "shape": list(W.shape), "scale": scales[name], "rank": int(A.shape[0]),
            "top": idx.tolist(), "top_sigma": factors.S[idx].tolist(), "top_rate": rates[idx].tolist(),
            "top_position": [i / n for i in idx.tolist()],
            "rates": [None if math.isnan(v) else v for v in rates.tolist()],
            "sigma": factors.S.tolist(),
        }
        if ref is not None:
            key = next((c for c in (name, name.removeprefix("model."), f"model.{name}") if c in ref), None)
            if key is None:
                raise SystemExit(f"The reference has no weight for {name}.")
            true = change_rates(W, ref[key].float() - W, dtype=dtype, svd=factors)
            entry["true_top"] = top_directions(true, min(16, n)).tolist()
            entry["overlap"] = tsd_overlap(rates, true, k_pred=k, k_true_recall=min(4, n),
                                           k_true_accuracy=min(16, n))
            entry["true_rates"] = [None if math.isnan(v) else v for v in true.tolist()]
        out[name] = entry
    return out


def summarize(result: dict[str, Any]) -> str:
    """A console table: per matrix the top directions, their mean spectral position, and overlaps if present."""
    lines = [f"{'matrix':<58} {'top directions':<34} {'pos':>5} {'recall':>7} {'acc':>6}"]
    recalls, accs = [], []
    for name, e in result.items():
        pos = sum(e["top_position"]) / len(e["top_position"])
        ov = e.get("overlap")
        if ov:
            recalls.append(ov["recall"])
            accs.append(ov["accuracy"])
        rec = f"{ov['recall']:7.2f} {ov['accuracy']:6.2f}" if ov else f"{'':>7} {'':>6}"
        lines.append(f"{name[-58:]:<58} {str(e['top'][:8])[:34]:<34} {pos:5.2f} {rec}")
    if recalls:
        lines.append(f"mean over {len(recalls)} matrices: recall {sum(recalls) / len(recalls):.3f}, "
                     f"accuracy {sum(accs) / len(accs):.3f}")
    return "\n".join(lines)


def plot_profile(result: dict[str, Any], match: str, path: Path) -> str:
    """PNG of one matrix's change rates against the singular-value index (the paper's Figure 1 analogue)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = next((n for n in result if match in n), None)
    if name is None:
        raise SystemExit(f"No adapted matrix matches '{match}'; names look like {next(iter(result))}.")
    e = result[name]
    xs = range(len(e["rates"]))
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=120)
    ax.plot(xs, [v if v is not None else float("nan") for v in e["rates"]], lw=0.8, label="LoRA ΔW = sBA")
    if "true_rates" in e:
        ax.plot(xs, [v if v is not None else float("nan") for v in e["true_rates"]], lw=0.8, alpha=0.7,
                label="full fine-tuning ΔW*")
    ax.scatter(e["top"], e["top_rate"], color="crimson", s=14, zorder=3, label=f"top-{len(e['top'])} (predicted TSD)")
    ax.set_yscale("log")
    ax.set_xlabel("singular direction i (σ descending)")
    ax.set_ylabel("change rate |uᵢᵀ ΔW vᵢ| / σᵢ")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spectune.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("adapter", type=Path, help="a run folder or a PEFT LoRA adapter folder")
    p.add_argument("--base", help="base model (default: the run's model, or adapter_config's base model)")
    p.add_argument("--kind", choices=["causal_lm", "sequence_classification"], help="for a bare adapter folder")
    p.add_argument("--num-labels", type=int, help="classifier size, for a bare SEQ_CLS adapter folder")
    p.add_argument("--reference", type=Path, help="a full fine-tuning run folder (merged/) giving ΔW* = W* − W")
    p.add_argument("--top", type=int, default=8, help="directions per matrix (LoRA-Dash's s; paper: 8)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--plot", metavar="MATRIX", help="write the change-rate profile of the first matrix matching this")
    p.add_argument("--out", type=Path, help="output folder (default: <run>/analysis or ./analysis)")
    args = p.parse_args(argv)

    if not args.adapter.exists():
        raise SystemExit(f"spectune.analyze: error: {args.adapter} does not exist; pass a run folder or a PEFT LoRA "
                         "adapter folder.")
    if args.reference is not None:
        if not args.reference.exists():
            raise SystemExit(f"spectune.analyze: error: --reference {args.reference} does not exist; pass a finished "
                             "full fine-tuning run folder of the same model and task.")
        reference_weights_check(args.reference)
    src = resolve_source(args.adapter, args.base, args.kind, args.num_labels)
    out_dir = args.out or ((src.run_dir / "analysis") if src.run_dir else Path("analysis"))
    target = out_dir / "tsd_analysis.json"
    if target.exists():
        raise SystemExit(f"{target} exists; analyses are never overwritten. Pass another --out.")
    result = analyze(src, args.reference, args.top, getattr(torch, args.dtype))
    from spectune.io import write_json_atomic

    write_json_atomic(target, {"adapter": str(src.adapter_dir), "base": src.base,
                               "reference": str(args.reference) if args.reference else None, "matrices": result},
                      indent=1)
    print(summarize(result))
    if args.plot:
        name = plot_profile(result, args.plot, out_dir / "change_rate_profile.png")
        print(f"profile of {name}: {out_dir / 'change_rate_profile.png'}")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
