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
    if tol is not None and tol < 0:
        raise ValueError(f"tol must be ≥ 0; got {tol}.")
    eps_dtype = m.dtype if m.dtype.is_floating_point else torch.float64
    m64 = m.to(torch.float64)
    sigma = torch.linalg.svdvals(m64) if m64.numel() else torch.zeros(0, dtype=torch.float64)
    sigma_max = float(sigma[0]) if sigma.numel() else 0.0
    used_tol = max(m.shape) * torch.finfo(eps_dtype).eps * sigma_max if tol is None else float(tol)
    fro = float(torch.linalg.norm(m64)) if m64.numel() else 0.0
    if sigma_max > 0.0:
        stable = float((sigma**2).sum()) / sigma_max**2  # from σ: Σσ² ≥ σ_1² holds in floating point too
        p = sigma / sigma.sum()
        p = p[p > 0]
        effective = math.exp(float(-(p * p.log()).sum()))
    else:
        stable = effective = 0.0
    return {
        "shape": [int(s) for s in m.shape],
        "singular_values": sigma.tolist(),
        "tol": used_tol,
        "numerical_rank": int((sigma > used_tol).sum()),
        "stable_rank": stable,
        "effective_rank": effective,
        "frobenius_norm": fro,
        "spectral_norm": sigma_max,
    }
