"""Coordinates and change rates of an update on the core directions of W (LoRA-Dash, Si et al. 2024).

For W = U Σ Vᵀ (reduced SVD, σ_1 ≥ … ≥ σ_k) and an update ΔW, the coordinate of ΔW on core direction u_i v_iᵀ is
Δσ_i = u_iᵀ ΔW v_i (the i-th diagonal entry of Uᵀ ΔW V), and its change rate is δ_i = |Δσ_i| / σ_i (LoRA-Dash,
§3, the "change rate" of direction i). The task-specific directions (TSD) are the directions with the largest δ_i.
For a LoRA update ΔW = s·B A the diagonal is computed without forming ΔW (methods.md):
Δσ_i = s · Σ_j (UᵀB)_{ij} (A V)_{ji}, i.e. the row-sums of (UᵀB) ⊙ (AV)ᵀ, in O(r·k·(d_out + d_in)).

All results are ordered like W's singular values (index 0 = largest σ). Every quantity here is invariant to flipping
u_i and v_i together, so the SVD's sign convention does not matter.

Tiny σ_i. A direction whose σ_i is at or below a tolerance has no defined relative change (its u_i, v_i are any
basis of W's numerical null space), so its rate is **NaN**, never the result of dividing by ~0. The default
tolerance is the numpy/LAPACK rank convention tol = max(d_out, d_in) · eps(SVD dtype) · σ_1 (see ``rank.py``);
pass ``tol=0.0`` to keep every σ_i > 0 (σ_i = 0 stays NaN). ``top_directions`` ranks NaN rates below all others.
"""

from __future__ import annotations

import torch

from spectune.spectral.decomposition import SVD, _check_matrix
from spectune.spectral.decomposition import svd as compute_svd

_FLOATS = (torch.float32, torch.float64)


def _factors(weight: torch.Tensor, dtype: torch.dtype, svd: SVD | None) -> tuple[SVD, torch.dtype]:
    """The SVD to use (given, or computed in ``dtype``) cast to ``dtype``, and the dtype it was computed in."""
    if dtype not in _FLOATS:
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}.")
    _check_matrix(weight)
    if svd is None:
        svd = compute_svd(weight, dtype)
    elif svd.shape != tuple(weight.shape):
        raise ValueError(f"The SVD is of a {svd.shape} matrix but the weight is {tuple(weight.shape)}.")
    return svd.to(dtype=dtype, device=weight.device), svd.dtype


def default_tol(svd: SVD, computed_in: torch.dtype | None = None) -> float:
    """max(d_out, d_in) · eps · σ_1, with eps of the dtype the SVD was computed in (σ's below it are round-off)."""
    eps = torch.finfo(computed_in or svd.dtype).eps
    sigma_max = float(svd.S[0]) if svd.S.numel() else 0.0
    return max(svd.shape) * eps * sigma_max


def rates_from_changes(changes: torch.Tensor, sigma: torch.Tensor, tol: float) -> torch.Tensor:
    """δ_i = |Δσ_i| / σ_i where σ_i > tol, NaN where σ_i ≤ tol (no division by ~0 ever happens)."""
    if changes.shape != sigma.shape:
        raise ValueError(f"changes {tuple(changes.shape)} and sigma {tuple(sigma.shape)} differ in shape.")
    if tol < 0:
        raise ValueError(f"tol must be ≥ 0; got {tol}.")
    defined = sigma > tol
    safe = torch.where(defined, sigma, torch.ones_like(sigma))
    return torch.where(defined, changes.abs() / safe, torch.full_like(sigma, float("nan")))


def coordinate_changes(
    weight: torch.Tensor, delta: torch.Tensor, dtype: torch.dtype = torch.float64, svd: SVD | None = None
) -> torch.Tensor:
    """Signed Δσ_i = u_iᵀ ΔW v_i for every i (the diagonal of Uᵀ ΔW V), in ``dtype``, ordered like σ.

    ``svd`` (e.g. from ``SVDCache``) is used when given, cast to ``dtype``; otherwise W is decomposed in ``dtype``.
    The precision of the result is that of the coarser of the two.
    """
    factors, _ = _factors(weight, dtype, svd)
    if tuple(delta.shape) != tuple(weight.shape):
        raise ValueError(f"delta {tuple(delta.shape)} must have the weight's shape {tuple(weight.shape)}.")
    d = delta.detach().to(device=weight.device, dtype=dtype)
    return ((factors.U.mT @ d) * factors.Vh).sum(dim=1)  # row i: Σ_j (Uᵀ ΔW)_{ij} (Vᵀ)_{ij} = u_iᵀ ΔW v_i


def coordinate_changes_lowrank(
    weight: torch.Tensor,
    B: torch.Tensor,
    A: torch.Tensor,
    scale: float,
    dtype: torch.dtype = torch.float64,
    svd: SVD | None = None,
) -> torch.Tensor:
    """Signed Δσ_i of ΔW = scale · B A without forming ΔW: scale · rowsum((UᵀB) ⊙ (AV)ᵀ).

    B ∈ R^{d_out×r} (PEFT ``lora_B.weight``), A ∈ R^{r×d_in} (``lora_A.weight``), scale = s = α/r (or
    α/√r for rsLoRA). Same dtype and ``svd`` rules as ``coordinate_changes``.
    """
    factors, _ = _factors(weight, dtype, svd)
    d_out, d_in = factors.shape
    if B.dim() != 2 or A.dim() != 2 or B.shape[0] != d_out or A.shape[1] != d_in or B.shape[1] != A.shape[0]:
        raise ValueError(f"Expected B (d_out={d_out}, r) and A (r, d_in={d_in}); got B {tuple(B.shape)}, "
                         f"A {tuple(A.shape)}.")
    b = B.detach().to(device=weight.device, dtype=dtype)
    a = A.detach().to(device=weight.device, dtype=dtype)
    utb = factors.U.mT @ b  # (k, r)
    av = a @ factors.Vh.mT  # (r, k)
    return scale * (utb * av.mT).sum(dim=1)


def change_rates(
    weight: torch.Tensor,
    delta: torch.Tensor,
    dtype: torch.dtype = torch.float64,
    svd: SVD | None = None,
    tol: float | None = None,
) -> torch.Tensor:
    """δ_i = |u_iᵀ ΔW v_i| / σ_i for every i, ordered like W's σ (descending); NaN where σ_i ≤ ``tol``.

    ``tol`` None means ``default_tol`` (max(d_out, d_in) · eps · σ_1 of the SVD's dtype); see the module docstring.
    """
    factors, computed_in = _factors(weight, dtype, svd)
    changes = coordinate_changes(weight, delta, dtype, factors)
    return rates_from_changes(changes, factors.S, default_tol(factors, computed_in) if tol is None else tol)


def change_rates_lowrank(
    weight: torch.Tensor,
    B: torch.Tensor,
    A: torch.Tensor,
    scale: float,
    dtype: torch.dtype = torch.float64,
    svd: SVD | None = None,
    tol: float | None = None,
) -> torch.Tensor:
    """``change_rates`` for ΔW = scale · B A, computed from the factors (LoRA-Dash's pre-launch → dash switch)."""
    factors, computed_in = _factors(weight, dtype, svd)
    changes = coordinate_changes_lowrank(weight, B, A, scale, dtype, factors)
    return rates_from_changes(changes, factors.S, default_tol(factors, computed_in) if tol is None else tol)


def top_directions(rates: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (int64) of the ``k`` largest rates, largest first: LoRA-Dash's S = top-s of δ.

    NaN rates (undefined, σ_i ≈ 0) rank below every number; ties go to the lower index (the larger σ), so the
    choice is deterministic. ValueError unless 0 ≤ k ≤ len(rates).
    """
    rates = torch.as_tensor(rates)
    if rates.dim() != 1:
        raise ValueError(f"rates must be 1-D; got shape {tuple(rates.shape)}.")
    if not 0 <= k <= rates.numel():
        raise ValueError(f"k={k} must be between 0 and the number of directions ({rates.numel()}).")
    key = torch.nan_to_num(rates.detach().to(torch.float64), nan=-float("inf"), posinf=float("inf"))
    order = torch.sort(key, descending=True, stable=True).indices
    return order[:k].to(torch.long)
