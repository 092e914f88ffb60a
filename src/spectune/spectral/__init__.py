"""Spectral toolkit: cached SVDs of weights, LoRA-Dash change rates and TSD overlaps, rank measures of updates.

Imports only torch, numpy, safetensors/tqdm and the standard library (plus ``spectune.paths``): it sits at the bottom
of the import graph, below methods/, training/ and evaluation/.
"""

from spectune.spectral.decomposition import SVD, SVDCache, model_svds, svd, weight_hash
from spectune.spectral.overlap import accuracy, recall, tsd_overlap
from spectune.spectral.rank import rank_stats, rank_stats_lowrank
from spectune.spectral.rates import (
    change_rates,
    change_rates_lowrank,
    coordinate_changes,
    coordinate_changes_lowrank,
    default_tol,
    rates_from_changes,
    top_directions,
)

__all__ = [
    "SVD",
    "SVDCache",
    "accuracy",
    "change_rates",
    "change_rates_lowrank",
    "coordinate_changes",
    "coordinate_changes_lowrank",
    "default_tol",
    "model_svds",
    "rank_stats",
    "rank_stats_lowrank",
    "rates_from_changes",
    "recall",
    "svd",
    "top_directions",
    "tsd_overlap",
    "weight_hash",
]
