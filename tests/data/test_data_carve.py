"""Carve-outs and subsamples: disjoint, seeded, reproducible, with errors that name the fix."""

from __future__ import annotations

import pytest

from spectune.data.carve import carve, subsample


def test_carve_disjoint_sizes_and_sorted() -> None:
    train, test = carve(100, 30, 20, seed=0)
    assert len(train) == 30 and len(test) == 20
    assert not set(train) & set(test)
    assert set(train) | set(test) <= set(range(100))
    assert train == sorted(train) and test == sorted(test)


def test_carve_is_reproducible_and_seed_dependent() -> None:
    assert carve(500, 50, 50, seed=3) == carve(500, 50, 50, seed=3)
    assert carve(500, 50, 50, seed=3) != carve(500, 50, 50, seed=4)
    assert carve(500, 50, 50, seed=0)[1] != carve(500, 50, 50, seed=1)[1]


def test_carve_test_set_does_not_depend_on_n_train() -> None:
    _, test_small = carve(300, 10, 40, seed=7)
    _, test_large = carve(300, 200, 40, seed=7)
    assert test_small == test_large


def test_carve_none_means_all_remaining() -> None:
    train, test = carve(50, 10, None, seed=0)
    assert len(train) == 10 and len(test) == 40 and sorted(train + test) == list(range(50))
    train, test = carve(50, None, 15, seed=0)
    assert len(train) == 35 and len(test) == 15 and sorted(train + test) == list(range(50))
    train, test = carve(51, None, None, seed=0)
    assert (len(train), len(test)) == (25, 26) and sorted(train + test) == list(range(51))


def test_carve_too_many_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"n_train \+ n_test <= 277"):
        carve(277, 200, 100, seed=0)
    with pytest.raises(ValueError, match="null"):
        carve(10, 11, None, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        carve(10, -1, 2, seed=0)
    with pytest.raises(TypeError):
        carve(10, 2.5, 2, seed=0)  # type: ignore[arg-type]


def test_subsample() -> None:
    assert subsample(5, None, seed=0) == [0, 1, 2, 3, 4]
    s = subsample(1000, 10, seed=1)
    assert len(s) == 10 == len(set(s)) and s == sorted(s) and s == subsample(1000, 10, seed=1)
    assert s != subsample(1000, 10, seed=2)
    with pytest.raises(ValueError, match="only 5"):
        subsample(5, 6, seed=0)
