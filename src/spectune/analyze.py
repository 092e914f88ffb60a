"""``python -m spectune.analyze``: one spectral lens over every method (LoRA-Dash's change rates, Si et al. 2024).

For a run of any registered method (LoRA, LoRA-Dash, PeriodicLoRA, SVF, full fine-tuning) the run is loaded through
its method (``spectune.training.artifacts.load_trained``) and its accumulated update ΔW = W_now − W_0 is read with
``method.update_factors(model)`` — factors B, A with ΔW = B A, never formed densely (LoRA's s·B A, LoRA-Dash's dash
term U_S diag(δ) V_Sᵀ, PeriodicLoRA's merged stages, SVF's U_J diag((s − σ)_J) Vᵀ_J) — or, for a dense method, as
W* − W. For every matrix W = U Σ Vᵀ of the *base* model (reduced SVD, float64 by default) the change rate of each core
direction u_i v_iᵀ is δ_i = |u_iᵀ ΔW v_i| / σ_i. The command reports per matrix the top-k directions (the run's
"predicted" TSD), where they sit in the spectrum (index / min(d_out, d_in)) and the whole profile. For an SVF expert
δ_i = |s_i/σ_i − 1|: |z_i − 1| in the paper form (``spectune.spectral.lens``).

Optional, in any combination:

* ``--reference <full fine-tuning run>``: the true update ΔW* = W* − W; the paper's overlaps per matrix: recall =
  share of the true top-4 inside the run's top-k (k = --top, paper 8), accuracy = share of the run's top-k inside the
  true top-16 (``spectune.spectral.overlap.tsd_overlap``).
* ``--compare <other run>``: the other run's update on the *same* basis (this run's W; the two runs must share the
  base model) and, per shared matrix and averaged, overlap = |T_k(δ) ∩ T_k(δ')| / k (the symmetric top-k agreement,
  ``overlap.recall`` with k_pred = k_true = k), plus recall / accuracy with the other run as the "true" side
  (``spectune.spectral.lens.compare_rates``). With ``--reference`` too, the other run's own overlaps with ΔW*.

Examples::

    python -m spectune.analyze runs/single/minilm/lora-r8/sst2/seed0
    python -m spectune.analyze runs/.../lora-r8/sst2/seed0 --reference runs/.../full/sst2/seed0 --plot query
    python -m spectune.analyze runs/.../svf-paper-mlp/sst2/seed0 --compare runs/.../dash-r8-s8/sst2/seed0 \\
        --reference runs/.../full/sst2/seed0
    python -m spectune.analyze path/to/adapter --base smollm2 --kind causal_lm

Writes ``<out>/tsd_analysis.json`` (with ``--compare``: ``<out>/tsd_compare_<other run>-<hash8>.json``) holding per
matrix the top indices, their σ and rates, positions, overlaps and the full rate profiles, and, with ``--plot``, a PNG
of one matrix's profiles beside it. ``--out`` defaults to ``<run folder>/analysis`` (or ``./analysis``). Outputs are
written to a temporary file and linked into place: an existing analysis is never overwritten. See docs/analyze.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spectune.spectral import SVDCache, change_rates, top_directions, tsd_overlap
from spectune.spectral.lens import Update, compare_rates, is_zero_update, update_rates

# Task heads are re-initialised when a base model loads (their W_0 is not the run's): never part of a dense update.
HEADS = re.compile(r"(^|\.)(classifier|score|lm_head)(\.|$)")
# Largest relative Frobenius difference between two runs' W_0 that still counts as one base (bf16 vs fp32 copies).
SAME_BASE_RTOL = 1e-2


@dataclass
class AdapterSource:
    """Where a bare PEFT LoRA adapter, its base model and (optionally) the run's config come from."""

    adapter_dir: Path
    base: str
    kind: str
    num_labels: int | None
    num_layers: int | None
    run_dir: Path | None


@dataclass
class RunUpdate:
    """One run's accumulated update ΔW = W_now − W_0 per matrix (plain-model names) and the base weights W_0.

    ``updates[name]``: (B, A) with ΔW = ``scales[name]``·B A, or the dense ΔW. ``weights[name]``: W_0, fp32 CPU.
    """

    path: Path
    artifact: Path
    method: str
    display: str
    base: str
    form: str
    updates: dict[str, Update]
    weights: dict[str, torch.Tensor]
    scales: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None


def _fail(message: str) -> SystemExit:
    return SystemExit(f"spectune.analyze: error: {message}")


def resolve_source(path: Path, base: str | None, kind: str | None, num_labels: int | None) -> AdapterSource:
    """A bare PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) and its base model."""
    if not (path / "adapter_config.json").exists():
        raise SystemExit(f"{path} is neither a run folder (config.yaml + the method's adapter/ or merged/) nor a PEFT "
                         "adapter folder (adapter_config.json). Point to one of them.")
    acfg = json.loads((path / "adapter_config.json").read_text())
    if acfg.get("peft_type") != "LORA":
        raise SystemExit(f"{path} holds a {acfg.get('peft_type')} adapter; this analysis needs LoRA factors B, A.")
    task_type = acfg.get("task_type") or "CAUSAL_LM"
    k = kind or ("sequence_classification" if task_type == "SEQ_CLS" else "causal_lm")
    if k == "sequence_classification" and num_labels is None:
        raise SystemExit("A sequence-classification adapter needs --num-labels (the head's size).")
    return AdapterSource(path, base or acfg.get("base_model_name_or_path"), k, num_labels, None, None)


def lora_factors(adapter_dir: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
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


def _selected(name: str, matrices: re.Pattern[str] | None) -> bool:
    return matrices is None or matrices.search(name) is not None


def read_adapter(src: AdapterSource, matrices: re.Pattern[str] | None = None) -> RunUpdate:
    """A bare PEFT LoRA adapter's ΔW = s·B A (from its files) and W_0 of its base model."""
    from spectune.methods.base import base_weight, plain_modules
    from spectune.models import load_model_and_tokenizer

    pairs, scales = lora_factors(src.adapter_dir)
    pairs = {n: p for n, p in pairs.items() if _selected(n, matrices)}
    base, _ = load_model_and_tokenizer(src.base, src.kind, num_labels=src.num_labels, num_layers=src.num_layers)
    modules = plain_modules(base)
    missing = [n for n in pairs if n not in modules]
    if missing:
        raise SystemExit(f"Adapter module {missing[0]} is not in the base model {src.base}: wrong --base?")
    weights = {n: base_weight(modules[n]).detach().float().cpu().clone() for n in pairs}
    updates: dict[str, Update] = {n: (B.float(), A.float()) for n, (B, A) in pairs.items()}
    return RunUpdate(src.adapter_dir, src.adapter_dir, "lora", "LoRA", src.base, "lowrank", updates, weights,
                     {n: scales[n] for n in pairs}, src.run_dir)


def read_run(run_dir: Path, matrices: re.Pattern[str] | None = None) -> RunUpdate:
    """A run folder of any registered method: the update through ``method.update_factors`` (or W* − W), and W_0.

    The trained model is loaded by ``load_trained`` (the method's own loader) and dropped before the base model (W_0,
    the basis) is loaded. A dense method's matrices are its ``nn.Linear`` weights that changed, task heads excluded.
    """
    import gc

    from torch import nn

    from spectune.config import method_kwargs
    from spectune.errors import UserError
    from spectune.methods import build_method, entry
    from spectune.methods.base import base_weight, plain_modules
    from spectune.training.artifacts import load_base, load_trained, run_config

    try:
        cfg = run_config(run_dir)
        method = build_method(cfg.method.name, **method_kwargs(cfg))
    except (UserError, ValueError, TypeError) as err:
        raise _fail(f"{run_dir}: {err}") from None
    folder = run_dir / method.artifact
    if not folder.is_dir():
        raise _fail(f"{folder} is missing: the run did not finish saving (see {run_dir}/summary.json); resume it "
                    "with resume=true.")
    if (folder / "adapter_config.json").exists():
        lora_factors(folder)  # a truncated or hand-edited PEFT adapter is named before any model loads
    try:
        model, _, method = load_trained(cfg, run_dir, method)
    except UserError as err:
        raise _fail(str(err)) from None
    factors = method.update_factors(model)
    dense = factors is None
    updates: dict[str, Update] = {}
    now: dict[str, torch.Tensor] = {}
    if not dense:
        updates = {n: (B.float().cpu(), A.float().cpu()) for n, (B, A) in factors.items() if _selected(n, matrices)}
    else:
        now = {n: base_weight(m).detach().float().cpu().clone() for n, m in plain_modules(model).items()
               if isinstance(m, nn.Linear) and not HEADS.search(n) and _selected(n, matrices)}
    del model, factors
    gc.collect()
    base, _ = load_base(cfg)
    modules = plain_modules(base)
    names = list(now) if dense else list(updates)
    missing = [n for n in names if n not in modules]
    if missing:
        raise _fail(f"{run_dir}: the update names {missing[0]}, which the base model {cfg.model.name_or_path} lacks.")
    weights = {n: base_weight(modules[n]).detach().float().cpu().clone() for n in names}
    del base, modules
    if dense:
        for n, w in now.items():
            if tuple(w.shape) != tuple(weights[n].shape):
                raise _fail(f"{run_dir}: {n} is {tuple(w.shape)} in the run but {tuple(weights[n].shape)} in the base.")
            if torch.equal(w, weights[n]):
                weights.pop(n)
            else:
                updates[n] = w - weights[n]
    if not updates:
        raise _fail(f"{run_dir}: method={cfg.method.name} changed no matrix"
                    f"{' matching --matrices' if matrices is not None else ''}; nothing to analyse.")
    e = entry(cfg.method.name)
    return RunUpdate(run_dir, folder, e.name, e.display, str(cfg.model.name_or_path), method.update_form, updates,
                     weights, {n: 1.0 for n in updates}, run_dir)


def read_source(path: Path, base: str | None, kind: str | None, num_labels: int | None,
                matrices: re.Pattern[str] | None = None) -> RunUpdate:
    """A run folder (config.yaml: any method, through :func:`read_run`) or a bare PEFT LoRA adapter folder."""
    if (path / "config.yaml").exists():
        return read_run(path, matrices)
    return read_adapter(resolve_source(path, base, kind, num_labels), matrices)


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


def _floats(t: torch.Tensor) -> list[float | None]:
    """A JSON-ready list: NaN (an undefined rate) as None."""
    return [None if math.isnan(v) else v for v in t.tolist()]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _check_same_base(run: RunUpdate, other: RunUpdate, names: list[str]) -> float:
    """The largest ‖W_0 − W_0'‖_F / ‖W_0‖_F over ``names``; refuses two runs of different base models."""
    worst = 0.0
    for n in names:
        a, b = run.weights[n], other.weights[n]
        if a.shape != b.shape:
            raise _fail(f"{n} is {tuple(a.shape)} in {run.path} but {tuple(b.shape)} in {other.path}: the runs do not "
                        "share a base model, so their directions live on different bases.")
        rel = float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a).clamp_min(1e-30))
        worst = max(worst, rel)
        if rel > SAME_BASE_RTOL:
            raise _fail(f"{n} differs between the base models of {run.path} ({run.base}) and {other.path} "
                        f"({other.base}) by {rel:.3g} (relative Frobenius): the runs do not share a base model, so "
                        "their most-changed directions cannot be compared on one basis.")
    return worst


def analyze(run: RunUpdate, reference: Path | None = None, top: int = 8, dtype: torch.dtype = torch.float64,
            cache: SVDCache | None = None, other: RunUpdate | None = None) -> dict[str, Any]:
    """Change-rate profile and TSD statistics of every matrix the run changed, on W_0's own basis.

    ``reference``: a full fine-tuning run (ΔW* = W* − W_0): the paper's recall / accuracy per matrix. ``other``: a
    second run of the same base: its rates on this run's basis and ``compare_rates`` per shared matrix. Returns
    {matrix name: entry} (entry keys: docs/analyze.md).
    """
    from tqdm.auto import tqdm

    ref = reference_weights(reference) if reference is not None else None
    cache = cache or SVDCache(dtype=dtype)  # a float64 analysis needs float64 singular vectors, not cast fp32 ones
    out: dict[str, Any] = {}
    for name in tqdm(sorted(run.updates), desc="matrices", unit="matrix"):
        W = run.weights[name]
        factors = cache.get(run.base, f"{name}.weight", W)
        upd = run.updates[name]
        rates = update_rates(W, upd, run.scales.get(name, 1.0), dtype=dtype, svd=factors)
        n = rates.numel()
        k = min(top, n)
        idx = top_directions(rates, k)
        entry: dict[str, Any] = {
            "shape": list(W.shape), "update": "lowrank" if isinstance(upd, tuple) else "dense",
            "scale": run.scales.get(name, 1.0), "rank": int(upd[1].shape[0]) if isinstance(upd, tuple) else None,
            "top": idx.tolist(), "top_sigma": factors.S[idx].tolist(), "top_rate": _floats(rates[idx]),
            "top_position": [i / n for i in idx.tolist()],
            "rates": _floats(rates), "sigma": factors.S.tolist(),
        }
        true = None
        if ref is not None:
            key = next((c for c in (name, name.removeprefix("model."), f"model.{name}") if c in ref), None)
            if key is None:
                raise SystemExit(f"The reference has no weight for {name}.")
            true = change_rates(W, ref[key].float() - W, dtype=dtype, svd=factors)
            entry["true_top"] = top_directions(true, min(16, n)).tolist()
            entry["overlap"] = tsd_overlap(rates, true, k_pred=k, k_true_recall=min(4, n),
                                           k_true_accuracy=min(16, n))
            entry["true_rates"] = _floats(true)
        if other is not None and name in other.updates:
            o_rates = update_rates(W, other.updates[name], other.scales.get(name, 1.0), dtype=dtype, svd=factors)
            o_idx = top_directions(o_rates, k)
            cmp: dict[str, Any] = {
                "top": o_idx.tolist(), "top_rate": _floats(o_rates[o_idx]),
                "top_position": [i / n for i in o_idx.tolist()], "rates": _floats(o_rates),
                "overlap": compare_rates(rates, o_rates, k),
            }
            if true is not None:
                cmp["overlap_reference"] = tsd_overlap(o_rates, true, k_pred=k, k_true_recall=min(4, n),
                                                       k_true_accuracy=min(16, n))
            entry["compare"] = cmp
        if is_zero_update(rates):
            entry["zero_update"] = True
        out[name] = entry
    return out


def compare_summary(run: RunUpdate, other: RunUpdate, result: dict[str, Any], top: int) -> dict[str, Any]:
    """The other run, the overlap's definition, the matrices each side lacks and the means over shared matrices."""
    rows = [e["compare"]["overlap"] for e in result.values() if e.get("compare", {}).get("overlap")]
    return {
        "run": str(other.path), "method": other.method, "display": other.display, "k": top,
        "definition": "overlap = |T_k(rates) ∩ T_k(other rates)| / k on this run's W_0 basis (spectral.overlap.recall "
                      "with k_pred = k_true = k); recall = |T_k(rates) ∩ T_4(other)| / 4, accuracy = "
                      "|T_k(rates) ∩ T_16(other)| / k (tsd_overlap with the other run as the true TSD)",
        "shared_matrices": sum(1 for e in result.values() if "compare" in e),
        "compared_matrices": len(rows),
        "only_this_run": sorted(set(run.updates) - set(other.updates)),
        "only_other_run": sorted(set(other.updates) - set(run.updates)),
        "mean": {key: _mean([r[key] for r in rows]) for key in ("overlap", "recall", "accuracy")},
        "mean_chance": _mean([r["chance"] for r in rows]),
    }


def summarize(result: dict[str, Any]) -> str:
    """A console table: per matrix the top directions, their mean spectral position, and the overlaps present."""
    has_ref = any("overlap" in e for e in result.values())
    has_cmp = any("compare" in e for e in result.values())
    head = f"{'matrix':<52} {'top directions':<30} {'pos':>5}"
    if has_ref:
        head += f" {'recall':>7} {'acc':>6}"
    if has_cmp:
        head += f" {'vs-other':>8}" + (f" {'o.rec':>6} {'o.acc':>6}" if has_ref else "")
    lines = [head]
    cols: dict[str, list[float]] = {"recall": [], "accuracy": [], "vs": [], "o_recall": [], "o_accuracy": []}
    for name, e in result.items():
        pos = sum(e["top_position"]) / max(len(e["top_position"]), 1)
        line = f"{name[-52:]:<52} {str(e['top'][:8])[:30]:<30} {pos:5.2f}"
        if has_ref:
            ov = e.get("overlap")
            line += f" {ov['recall']:7.2f} {ov['accuracy']:6.2f}" if ov else f" {'':>7} {'':>6}"
            if ov:
                cols["recall"].append(ov["recall"])
                cols["accuracy"].append(ov["accuracy"])
        if has_cmp:
            c = e.get("compare") or {}
            vs = c.get("overlap")
            line += f" {vs['overlap']:8.2f}" if vs else f" {'-':>8}"
            if vs:
                cols["vs"].append(vs["overlap"])
            if has_ref:
                oref = c.get("overlap_reference")
                line += f" {oref['recall']:6.2f} {oref['accuracy']:6.2f}" if oref else f" {'':>6} {'':>6}"
                if oref:
                    cols["o_recall"].append(oref["recall"])
                    cols["o_accuracy"].append(oref["accuracy"])
        lines.append(line)
    if cols["recall"]:
        lines.append(f"mean over {len(cols['recall'])} matrices: recall {_mean(cols['recall']):.3f}, "
                     f"accuracy {_mean(cols['accuracy']):.3f}")
    if cols["o_recall"]:
        lines.append(f"other run vs the reference, mean over {len(cols['o_recall'])} matrices: recall "
                     f"{_mean(cols['o_recall']):.3f}, accuracy {_mean(cols['o_accuracy']):.3f}")
    if has_cmp:
        k = next((e["compare"]["overlap"]["k"] for e in result.values() if e.get("compare", {}).get("overlap")), None)
        chance = _mean([e["compare"]["overlap"]["chance"] for e in result.values()
                        if e.get("compare", {}).get("overlap")])
        lines.append(f"top-{k} overlap with the other run, mean over {len(cols['vs'])} shared matrices: "
                     + (f"{_mean(cols['vs']):.3f} (chance {chance:.3f})" if cols["vs"]
                        else "n/a (no shared matrix with a non-zero update)"))
    return "\n".join(lines)


def plot_profile(result: dict[str, Any], match: str, path: Path, labels: tuple[str, str | None] = ("run", None)) -> str:
    """PNG of one matrix's change rates against the singular-value index (the paper's Figure 1 analogue).

    ``labels``: the legend names of this run and of the compared run. Written like the JSON: never over a file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = next((n for n in result if match in n), None)
    if name is None:
        raise SystemExit(f"No analysed matrix matches '{match}'; names look like {next(iter(result))}.")
    e = result[name]
    xs = range(len(e["rates"]))

    def vals(v: list[float | None]) -> list[float]:
        return [x if x is not None else float("nan") for x in v]

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=120)
    ax.plot(xs, vals(e["rates"]), lw=0.8, label=f"{labels[0]} ΔW")
    if "compare" in e:
        ax.plot(xs, vals(e["compare"]["rates"]), lw=0.8, alpha=0.8, label=f"{labels[1]} ΔW")
    if "true_rates" in e:
        ax.plot(xs, vals(e["true_rates"]), lw=0.8, alpha=0.7, label="full fine-tuning ΔW*")
    ax.scatter(e["top"], vals(e["top_rate"]), color="crimson", s=14, zorder=3, label=f"{labels[0]} top-{len(e['top'])}")
    if "compare" in e:
        ax.scatter(e["compare"]["top"], vals(e["compare"]["top_rate"]), color="black", marker="x", s=14, zorder=3,
                   label=f"{labels[1]} top-{len(e['compare']['top'])}")
    ax.set_yscale("log")
    ax.set_xlabel("singular direction i of W (σ descending)")
    ax.set_ylabel("change rate |uᵢᵀ ΔW vᵢ| / σᵢ")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_new(path, buf.getvalue())
    return name


def write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then link it into place: readers never see half a file,
    and an existing ``path`` is never replaced (``FileExistsError``, even if it appeared meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)  # atomic and exclusive
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: check, then rename
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def output_name(other: Path | None) -> str:
    """``tsd_analysis.json``, or with ``--compare`` ``tsd_compare_<last 3 parts of its path>-<hash8>.json``."""
    if other is None:
        return "tsd_analysis.json"
    resolved = other.resolve()
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(resolved.parts[-3:]))
    digest = hashlib.blake2b(str(resolved).encode(), digest_size=4).hexdigest()
    return f"tsd_compare_{tail}-{digest}.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spectune.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("adapter", type=Path, help="a run folder of any method, or a bare PEFT LoRA adapter folder")
    p.add_argument("--base", help="base model of a bare adapter folder (default: adapter_config's base model)")
    p.add_argument("--kind", choices=["causal_lm", "sequence_classification"], help="for a bare adapter folder")
    p.add_argument("--num-labels", type=int, help="classifier size, for a bare SEQ_CLS adapter folder")
    p.add_argument("--reference", type=Path, help="a full fine-tuning run folder (merged/) giving ΔW* = W* − W")
    p.add_argument("--compare", type=Path, metavar="RUN",
                   help="another run of the same base model: overlap of the two runs' top-k directions on W's basis")
    p.add_argument("--top", type=int, default=8, help="directions per matrix (LoRA-Dash's s; paper: 8)")
    p.add_argument("--matrices", metavar="REGEX", help="analyse only matrices whose name matches (re.search)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--plot", metavar="MATRIX", help="write the change-rate profile of the first matrix matching this")
    p.add_argument("--out", type=Path, help="output folder (default: <run>/analysis or ./analysis)")
    args = p.parse_args(argv)

    if not args.adapter.exists():
        raise SystemExit(f"spectune.analyze: error: {args.adapter} does not exist; pass a run folder or a PEFT LoRA "
                         "adapter folder.")
    if args.top < 1:
        raise _fail(f"--top {args.top} must be >= 1.")
    try:
        matrices = re.compile(args.matrices) if args.matrices else None
    except re.error as err:
        raise _fail(f"--matrices '{args.matrices}' is not a regular expression ({err}).") from None
    if args.reference is not None:
        if not args.reference.exists():
            raise SystemExit(f"spectune.analyze: error: --reference {args.reference} does not exist; pass a finished "
                             "full fine-tuning run folder of the same model and task.")
        reference_weights_check(args.reference)
    if args.compare is not None and not args.compare.exists():
        raise _fail(f"--compare {args.compare} does not exist; pass a finished run folder of the same base model.")
    if not (args.adapter / "config.yaml").exists():
        resolve_source(args.adapter, args.base, args.kind, args.num_labels)  # refuse a wrong folder before loading
    run_dir = args.adapter if (args.adapter / "config.yaml").exists() else None
    out_dir = args.out or ((run_dir / "analysis") if run_dir else Path("analysis"))
    target = out_dir / output_name(args.compare)
    png = out_dir / ("change_rate_profile.png" if args.compare is None else f"{target.stem}_profile.png")
    for path in (target, png) if args.plot else (target,):
        if path.exists():
            raise SystemExit(f"{path} exists; analyses are never overwritten. Pass another --out.")

    run = read_source(args.adapter, args.base, args.kind, args.num_labels, matrices)
    other = None
    basis_diff = None
    if args.compare is not None:
        other = read_source(args.compare, args.base, args.kind, args.num_labels, matrices)
        shared = sorted(set(run.updates) & set(other.updates))
        if not shared:
            raise _fail(f"{args.adapter} and {args.compare} change no matrix in common ({sorted(run.updates)[:2]}… vs "
                        f"{sorted(other.updates)[:2]}…): nothing to compare. Train both on a shared target set.")
        basis_diff = _check_same_base(run, other, shared)
    result = analyze(run, args.reference, args.top, getattr(torch, args.dtype), other=other)
    doc: dict[str, Any] = {
        "adapter": str(run.artifact), "run": str(run.path), "method": run.method, "display": run.display,
        "base": run.base, "update_form": run.form, "dtype": args.dtype, "top": args.top,
        "basis": "reduced SVD of the base weight W_0 of each matrix; rate_i = |u_iᵀ ΔW v_i| / σ_i",
        "reference": str(args.reference) if args.reference else None,
        "compare": None, "matrices": result,
    }
    if other is not None:
        doc["compare"] = {**compare_summary(run, other, result, args.top), "base_rel_diff": basis_diff}
    if args.reference is not None:
        rows = [e["overlap"] for e in result.values() if "overlap" in e]
        doc["reference_mean"] = {key: _mean([r[key] for r in rows]) for key in ("recall", "accuracy")}
    try:
        write_new(target, (json.dumps(doc, indent=1, default=str) + "\n").encode())
    except FileExistsError:
        raise SystemExit(f"{target} exists; analyses are never overwritten. Pass another --out.") from None
    print(summarize(result))
    if args.plot:
        try:
            name = plot_profile(result, args.plot, png, (run.display, other.display if other else None))
        except FileExistsError:
            raise SystemExit(f"{png} exists; plots are never overwritten. Pass another --out.") from None
        print(f"profile of {name}: {png}")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
