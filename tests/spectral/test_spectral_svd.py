"""Reduced SVD and its disk cache: hits are identical, a changed weight misses, files survive, writes are atomic."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spectune.spectral import SVD, SVDCache, model_svds, svd, weight_hash

svd_module = importlib.import_module("spectune.spectral.decomposition")


@pytest.fixture
def cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SPECTUNE_CACHE", str(tmp_path))
    return tmp_path / "svd"


def _weight(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("shape", [(20, 20), (30, 12), (12, 30)])
def test_svd_is_reduced_descending_and_reconstructs(shape: tuple[int, int]) -> None:
    w = _weight(*shape)
    f = svd(w)
    k = min(shape)
    assert f.U.shape == (shape[0], k) and f.S.shape == (k,) and f.Vh.shape == (k, shape[1])
    assert f.V.shape == (shape[1], k) and torch.equal(f.V, f.Vh.T)
    assert f.dtype == torch.float32 and f.shape == shape
    assert (f.S[:-1] >= f.S[1:]).all()
    torch.testing.assert_close(f.reconstruct(), w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f.S.numpy(), np.linalg.svd(w.double().numpy(), compute_uv=False), rtol=1e-5)
    f64 = svd(w.to(torch.bfloat16), torch.float64)
    assert f64.dtype == torch.float64 and f64.U.dtype == torch.float64
    torch.testing.assert_close(f64.reconstruct(), w.to(torch.bfloat16).double(), rtol=0, atol=1e-12)


def test_svd_rejects_non_matrices_and_empty_zero3_shards() -> None:
    with pytest.raises(ValueError, match="2-D"):
        svd(torch.ones(3))
    with pytest.raises(ValueError, match="ZeRO-3"):
        svd(torch.ones(0, 4))
    with pytest.raises(ValueError, match="floating"):
        svd(torch.ones(2, 2), torch.int64)


def test_weight_hash_depends_on_values_dtype_and_shape_only() -> None:
    w = _weight(8, 6)
    assert weight_hash(w) == weight_hash(w.clone()) == weight_hash(w.T.contiguous().T)  # layout does not matter
    changed = w.clone()
    changed[3, 2] += 1e-6
    assert len({weight_hash(w), weight_hash(changed), weight_hash(w.double()), weight_hash(w.reshape(6, 8)),
                weight_hash(w, torch.float64), weight_hash(w.to(torch.bfloat16))}) == 6


def test_cache_miss_then_hit_returns_identical_tensors(cache_root: Path) -> None:
    w = _weight(24, 16)
    cache = SVDCache()
    assert cache.root == cache_root
    first = cache.get("HuggingFaceTB/SmolLM2@0.1.2", "model.layers.0.self_attn.q_proj.weight", w)
    assert (cache.hits, cache.misses) == (0, 1)
    name = f"model.layers.0.self_attn.q_proj.weight-{weight_hash(w)[:16]}.safetensors"
    path = cache_root / "HuggingFaceTB-SmolLM2-0.1.2" / name
    assert _files(cache_root) == [path]
    second = cache.get("HuggingFaceTB/SmolLM2@0.1.2", "model.layers.0.self_attn.q_proj.weight", w)
    assert (cache.hits, cache.misses) == (1, 1)
    for a, b in zip((first.U, first.S, first.Vh), (second.U, second.S, second.Vh)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    torch.testing.assert_close(second.S, svd(w).S)


def test_cache_survives_a_fresh_object_without_recomputing(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _weight(16, 24, seed=1)
    stored = SVDCache().get("m", "layer.weight", w)

    def no_svd(*_args: object, **_kwargs: object) -> SVD:
        raise AssertionError("a disk hit must not recompute the SVD")

    monkeypatch.setattr(svd_module, "svd", no_svd)
    fresh = SVDCache()
    loaded = fresh.get("m", "layer.weight", w)
    assert (fresh.hits, fresh.misses) == (1, 0)
    assert torch.equal(loaded.U, stored.U) and torch.equal(loaded.S, stored.S) and torch.equal(loaded.Vh, stored.Vh)


def test_changed_weight_same_name_misses(cache_root: Path) -> None:
    w = _weight(12, 12, seed=2)
    cache = SVDCache()
    a = cache.get("m", "q.weight", w)
    w2 = w.clone()
    w2[0, 0] += 1e-3
    b = cache.get("m", "q.weight", w2)
    assert (cache.hits, cache.misses) == (0, 2)
    assert not torch.equal(a.S, b.S)
    assert len(_files(cache_root / "m")) == 2
    cache.get("m", "q.weight", w)  # both versions stay cached
    assert cache.hits == 1
    SVDCache(dtype=torch.float64).get("m", "q.weight", w)  # another SVD dtype is another entry
    assert len(_files(cache_root / "m")) == 3


def test_writes_are_atomic_and_leave_no_temporary_files(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = SVDCache()
    for seed in range(3):
        cache.get("m", f"w{seed}.weight", _weight(10, 8, seed=seed))
    assert [p.suffix for p in _files(cache_root)] == [".safetensors"] * 3

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(svd_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.get("m", "late.weight", _weight(10, 8, seed=9))
    assert len(_files(cache_root)) == 3  # neither a half-written final file nor a temp file is left
    monkeypatch.undo()
    assert cache.get("m", "late.weight", _weight(10, 8, seed=9)).S.shape == (8,)
    assert len(_files(cache_root)) == 4


def test_damaged_file_is_a_miss_and_gets_rewritten(cache_root: Path) -> None:
    w = _weight(9, 7, seed=4)
    cache = SVDCache()
    path = cache.path_for("m", "x.weight", w)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    result = cache.get("m", "x.weight", w)
    assert cache.misses == 1 and torch.equal(result.S, svd(w).S)
    assert SVDCache().get("m", "x.weight", w).S.shape == (7,)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(12, 12, bias=False)
        self.v_proj = nn.Linear(12, 6)
        self.up_proj = nn.Linear(12, 20)
        self.norm = nn.LayerNorm(12)


def test_model_svds_covers_matching_linears_and_hits_on_the_second_pass(cache_root: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_Block(), _Block())
    cache = SVDCache()
    found = model_svds(model, lambda n: n.endswith(("q_proj", "v_proj")), "tiny", cache, progress=True)
    assert sorted(found) == ["0.q_proj", "0.v_proj", "1.q_proj", "1.v_proj"]
    assert (cache.hits, cache.misses) == (0, 4)
    torch.testing.assert_close(found["1.v_proj"].S, svd(model[1].v_proj.weight).S)
    again = model_svds(model, lambda n: n.endswith(("q_proj", "v_proj")), "tiny", cache, progress=False)
    assert (cache.hits, cache.misses) == (4, 4)
    assert all(torch.equal(found[k].S, again[k].S) for k in found)
    everything = model_svds(model, None, "tiny", progress=False)  # default cache under $SPECTUNE_CACHE
    assert len(everything) == 6
    assert len(_files(cache_root / "tiny")) == 6
