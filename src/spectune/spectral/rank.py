"""Rank measures of a matrix, e.g. PeriodicLoRA's accumulated update W_final − W_0 (Meng et al. 2024).

For M ∈ R^{m×n} with singular values σ_1 ≥ … ≥ σ_k ≥ 0 (k = min(m, n)), computed in float64:

* numerical rank = #{i : σ_i > tol}, default tol = max(m, n) · eps(dtype of M) · σ_1, the convention of
  ``numpy.linalg.matrix_rank`` and LAPACK (eps of float64 for integer or float64 input; of float32 for float32,
  of bf16/fp16 for those: a matrix is only known to its own precision);
* stable rank = ‖M‖_F² / ‖M‖_2² = Σ σ_i² / σ_1² (Rudelson & Vershynin 2007), in [1, rank], computed from the
  σ_i so that it is never below 1 by round-off;
* effective rank = exp(H(p)), p_i = σ_i / Σ_j σ_j, H(p) = −Σ p_i log p_i with 0·log 0 = 0 (Roy & Vetterli 2007),
  in [1, rank]; taken over all σ_i, as in the paper (round-off σ's add a negligible amount);
* Frobenius norm ‖M‖_F and spectral norm ‖M‖_2 = σ_1.

The zero matrix (σ_1 = 0): rank 0, stable rank 0 and effective rank 0 by definition here (both ratios are 0/0),
norms 0. Every value is a plain Python number or list, so the dict can be written to a run folder as JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def rank_stats(matrix: torch.Tensor | np.ndarray, tol: float | None = None) -> dict[str, Any]:
    """Spectrum, numerical/stable/effective rank and norms of a 2-D ``matrix`` (see the module docstring).

    Keys: ``shape``, ``singular_values`` (list, descending), ``tol`` (the one used), ``numerical_rank``,
    ``stable_rank``, ``effective_rank``, ``frobenius_norm``, ``spectral_norm``.
    """
    m = matrix if isinstance(matrix, torch.Tensor) else torch.as_tensor(np.asarray(matrix))
    m = m.detach().cpu()
    if m.dim() != 2:
        raise ValueError(f"rank_stats needs a 2-D matrix; got shape {tuple(m.shape)}.")
    eps_dtype = m.dtype if m.dtype.is_floating_point else torch.float64
    m64 = m.to(torch.float64)
    sigma = torch.linalg.svdvals(m64) if m64.numel() else torch.zeros(0, dtype=torch.float64)
    return _stats(tuple(m.shape), sigma, eps_dtype, tol)


def rank_stats_lowrank(B: torch.Tensor, A: torch.Tensor, tol: float | None = None) -> dict[str, Any]:
    """:func:`rank_stats` of M = B A (B: m×k, A: k×n) without forming M: the same keys and conventions.

    With B = Q_B R_B and Aᵀ = Q_A R_A (reduced QR, float64), M = Q_B (R_B R_Aᵀ) Q_Aᵀ and Q_B, Q_A have orthonormal
    columns, so σ(M) = σ(R_B R_Aᵀ), a k×k problem (k = r·stages for PeriodicLoRA's accumulated update). The
    spectrum is padded with zeros to min(m, n) values; ``tol`` defaults to max(m, n)·eps·σ_1 with eps of the
    factors' dtype, as for the dense matrix.
    """
    if B.dim() != 2 or A.dim() != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(f"rank_stats_lowrank needs B (m×k) and A (k×n); got {tuple(B.shape)} and {tuple(A.shape)}.")
    eps_dtype = B.dtype if B.dtype.is_floating_point else torch.float64
    b64, a64 = B.detach().cpu().to(torch.float64), A.detach().cpu().to(torch.float64)
    m, n = b64.shape[0], a64.shape[1]
    if b64.shape[1] >= min(m, n):  # no saving: the dense product is as small
        return _stats((m, n), torch.linalg.svdvals(b64 @ a64), eps_dtype, tol)
    _, r_b = torch.linalg.qr(b64)
    _, r_a = torch.linalg.qr(a64.mT)
    core = torch.linalg.svdvals(r_b @ r_a.mT)
    sigma = torch.cat([core, torch.zeros(min(m, n) - core.numel(), dtype=torch.float64)])
    return _stats((m, n), sigma, eps_dtype, tol)


def _tol(shape: tuple[int, ...], tol: float | None, eps_dtype: torch.dtype, sigma_max: float) -> float:
    if tol is not None and tol < 0:
        raise ValueError(f"tol must be ≥ 0; got {tol}.")
    return max(shape) * torch.finfo(eps_dtype).eps * sigma_max if tol is None else float(tol)


def _stats(shape: tuple[int, ...], sigma: torch.Tensor, eps_dtype: torch.dtype, tol: float | None) -> dict[str, Any]:
    """The measures from a descending float64 spectrum ``sigma`` of a matrix of ``shape``."""
    sigma_max = float(sigma[0]) if sigma.numel() else 0.0
    used_tol = _tol(shape, tol, eps_dtype, sigma_max)
    fro = float(sigma.pow(2).sum().sqrt()) if sigma.numel() else 0.0
    if sigma_max > 0.0:
        stable = float((sigma**2).sum()) / sigma_max**2  # from σ: Σσ² ≥ σ_1² holds in floating point too
        p = sigma / sigma.sum()
        p = p[p > 0]
        effective = math.exp(float(-(p * p.log()).sum()))
    else:
        stable = effective = 0.0
    return {
        "shape": [int(s) for s in shape],
        "singular_values": sigma.tolist(),
        "tol": used_tol,
        "numerical_rank": int((sigma > used_tol).sum()),
        "stable_rank": stable,
        "effective_rank": effective,
        "frobenius_norm": fro,
        "spectral_norm": sigma_max,
    }
