"""One spectral lens over every method's update: change rates on W's own basis, and the overlap of two runs' TSD.

Every method's accumulated update ΔW = W_now − W_0 of a matrix W = U Σ Vᵀ (reduced SVD of the base weight W_0) is
read on W's core directions u_i v_iᵀ, the coordinates LoRA-Dash uses (Si et al. 2024, §3):

    Δσ_i = u_iᵀ ΔW v_i,        δ_i = |Δσ_i| / σ_i                          (change rate of direction i)

whether ΔW comes as low-rank factors (LoRA: s·B A; LoRA-Dash: [s·B | U_S diag(δ)] [A; V_Sᵀ]; PeriodicLoRA: the
merged stages and the live adapter; SVF: U_J diag((s − σ)_J) Vᵀ_J) or dense (full fine-tuning: W* − W).

SVF (Transformer², Sun et al. 2025) in this lens. W' = U diag(s) Vᵀ on W's own U, V, so ΔW = U diag(s − σ) Vᵀ is
diagonal in W's basis and Δσ_i = s_i − σ_i exactly:

* paper form, s_i = σ_i z_i:                                   δ_i = |σ_i z_i − σ_i| / σ_i = |z_i − 1|;
* official form, m_i = sigmoid(p_i)·max_mult, s_i = σ_i m_i · Σ_j σ_j / Σ_j σ_j m_j:   δ_i = |s_i / σ_i − 1|
  = |m_i · Σσ / Σσm − 1|, which is *not* |m_i − 1|: a constant m (the official start, m ≈ sigmoid(0.1) ≈ 0.52)
  gives δ = 0, and the most-changed directions are those whose m_i deviates most from the σ-weighted mean of m.

:func:`svf_rates` is that closed form; the generic path (:func:`update_rates` on the method's factors) must agree
with it (tests/analysis/test_lens.py checks both forms in float64).

Comparing two runs on one basis. For two updates ΔW^a, ΔW^b of the same W (two runs of one base model) with rates
δ^a, δ^b on W's basis and T_k(δ) the indices of the k largest rates (``top_directions``: NaN last, ties to the larger
σ), :func:`compare_rates` reports

* ``overlap`` = |T_k(δ^a) ∩ T_k(δ^b)| / k, the symmetric top-k agreement: spectral/overlap.py's ``recall`` (equally
  its ``accuracy``) with k_pred = k_true = k;
* ``recall`` = |T_k(δ^a) ∩ T_4(δ^b)| / 4 and ``accuracy`` = |T_k(δ^a) ∩ T_16(δ^b)| / k: the paper's pair
  (``tsd_overlap`` with k_pred = k) with run b in the role of the "true" TSD.

A matrix whose update is zero in either run (every rate 0 or undefined) has no top-k: it gets no overlap.
"""

from __future__ import annotations

import numpy as np
import torch

from spectune.spectral.decomposition import SVD
from spectune.spectral.overlap import Rates, recall, tsd_overlap
from spectune.spectral.rates import change_rates, change_rates_lowrank

Update = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def update_rates(
    weight: torch.Tensor,
    update: Update,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
    svd: SVD | None = None,
    tol: float | None = None,
) -> torch.Tensor:
    """δ_i = |u_iᵀ ΔW v_i| / σ_i of ``update`` on W = ``weight``'s basis, ordered like σ (NaN where σ_i ≤ tol).

    ``update``: (B, A) with ΔW = ``scale``·B A (never formed densely), or the dense ΔW (times ``scale``).
    ``svd``: W's SVD (e.g. from ``SVDCache``), cast to ``dtype``; computed in ``dtype`` when None.
    """
    if isinstance(update, tuple):
        B, A = update
        return change_rates_lowrank(weight, B, A, scale, dtype=dtype, svd=svd, tol=tol)
    return change_rates(weight, update * scale if scale != 1.0 else update, dtype=dtype, svd=svd, tol=tol)


def svf_scale(sigma: torch.Tensor, z: torch.Tensor, rescale: bool = False) -> torch.Tensor:
    """s = σ ⊙ z, times Σσ / Σ(σ ⊙ z) when ``rescale`` (the official ``compose_new_params``), in float64.

    ``z`` is the paper's z: the expert's vector for the paper form, sigmoid(p)·max_mult for the official form
    (``SVF.expert_z`` gives it).
    """
    sig, zz = sigma.detach().double().cpu(), z.detach().double().cpu()
    if sig.shape != zz.shape or sig.dim() != 1:
        raise ValueError(f"sigma {tuple(sig.shape)} and z {tuple(zz.shape)} must be vectors of one length.")
    s = sig * zz
    return s * (sig.sum() / s.sum()) if rescale else s


def svf_rates(sigma: torch.Tensor, z: torch.Tensor, rescale: bool = False) -> torch.Tensor:
    """Closed-form change rates of an SVF expert on W's basis: δ_i = |s_i / σ_i − 1| (float64).

    Paper form (``rescale=False``): |z_i − 1|. Official form (``rescale=True``, z = sigmoid(p)·max_mult):
    |z_i·Σσ / Σ(σ ⊙ z) − 1|. σ_i = 0 gives NaN (no relative change is defined), as in ``rates_from_changes``.
    """
    sig = sigma.detach().double().cpu()
    s = svf_scale(sig, z, rescale)
    safe = torch.where(sig > 0, sig, torch.ones_like(sig))
    return torch.where(sig > 0, (s / safe - 1.0).abs(), torch.full_like(sig, float("nan")))


def _vector(x: Rates, what: str) -> torch.Tensor:
    """A 1-D CPU tensor of rates (from a tensor, an array or a sequence)."""
    t = (x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))).cpu()
    if t.dim() != 1:
        raise ValueError(f"{what} must be a 1-D rate vector; got shape {tuple(t.shape)}.")
    return t


def is_zero_update(rates: Rates) -> bool:
    """True when no direction moved: every rate is 0 or undefined (NaN), so no top-k set is meaningful."""
    r = _vector(rates, "rates").double()
    defined = r[~torch.isnan(r)]
    return defined.numel() == 0 or bool((defined == 0).all())


def topk_overlap(a: Rates, b: Rates, k: int) -> float:
    """|T_k(a) ∩ T_k(b)| / k: the share of the k most-changed directions two updates have in common (symmetric).

    Equal to spectral/overlap.py's ``recall(a, b, k_pred=k, k_true=k)`` (and its ``accuracy`` at the same k's).
    """
    return recall(a, b, k_pred=k, k_true=k)


def compare_rates(a: Rates, b: Rates, k: int = 8) -> dict[str, float | int] | None:
    """Overlap of run a's and run b's most-changed directions on one basis (see the module docstring), or None.

    Returns {"k", "shared" (= |T_k(a) ∩ T_k(b)|), "overlap" (= shared / k), "chance" (= k / n, the expected overlap
    of two independent uniformly random k-subsets of the n directions), "recall", "accuracy", "k_true_recall",
    "k_true_accuracy"} with every k clipped to the number of directions n; None when either update is zero.
    """
    ra, rb = _vector(a, "a"), _vector(b, "b")
    if ra.numel() != rb.numel():
        raise ValueError(f"a has {ra.numel()} directions but b has {rb.numel()}: not the same matrix.")
    if is_zero_update(ra) or is_zero_update(rb):
        return None
    n = ra.numel()
    k = min(k, n)
    ov = topk_overlap(ra, rb, k)
    paper = tsd_overlap(ra, rb, k_pred=k, k_true_recall=min(4, n), k_true_accuracy=min(16, n))
    return {"k": k, "shared": round(ov * k), "overlap": ov, "chance": k / n, "recall": paper["recall"],
            "accuracy": paper["accuracy"], "k_true_recall": paper["k_true_recall"],
            "k_true_accuracy": paper["k_true_accuracy"]}
