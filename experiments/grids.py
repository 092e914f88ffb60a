"""Sweep grids from conf/: the cells of a table, as ``python -m spectune.train -m`` would run them.

A table's experiment is ``conf/experiment/<experiment>.yaml`` (the settings every cell shares, and in its
``hydra.sweeper.params`` the axes every grid shares, e.g. the GLUE tasks); its grids are
``conf/sweep/<experiment>/<grid>.yaml``, each a ``# @package _global_`` file that sets only ``hydra.sweeper.params``.
One grid is one Hydra multirun::

    python -m spectune.train -m experiment=<experiment> +sweep=<experiment>/<grid> seed=0,1,2

Hydra merges the two ``params`` mappings (the grid's keys after the experiment's) and expands the Cartesian product
with the command line's overrides last (a ``seed=0,1,2`` there adds the seed axis). :func:`load_grids` composes
that config once per grid to read the merged mapping, and :meth:`Grid.cells` expands it with Hydra's own
``BasicSweeper.split_arguments``, so the cells here are exactly the jobs ``-m`` launches. ``make`` runs every grid of
the folder in name order; table drivers read their expected rows from :func:`cell_configs`; the tests compose and
validate every cell.

Only Hydra's compose API is used: no model, data or training code is loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from omegaconf import DictConfig, OmegaConf

from spectune.config import CONF_DIR

SWEEP_DIR = CONF_DIR / "sweep"
VERSION_BASE = "1.3"


@dataclass(frozen=True)
class Grid:
    """One grid of an experiment: ``params`` is the merged ``hydra.sweeper.params`` (override key → value string)."""

    experiment: str
    name: str
    params: dict[str, str]

    @property
    def base_overrides(self) -> list[str]:
        """What selects the grid on the command line: ``experiment=<e>``, ``+sweep=<e>/<grid>``."""
        return [f"experiment={self.experiment}", f"+sweep={self.experiment}/{self.name}"]

    def cells(self, extra: Sequence[str] = ()) -> list[list[str]]:
        """Every job's overrides, in the order Hydra's basic sweeper runs them (``extra``: more command-line
        overrides, e.g. ``seed=0,1,2``; a key given there replaces the grid's axis of that key)."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        arguments = [f"{k}={v}" for k, v in self.params.items()] + self.base_overrides + list(extra)
        overrides = OverridesParser.create().parse_overrides(arguments)
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]

    def axis(self, key: str) -> list[str]:
        """The values the grid sweeps for ``key`` (one value when fixed; empty when the grid does not set it)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if key not in self.params:
            return []
        (override,) = OverridesParser.create().parse_overrides([f"{key}={self.params[key]}"])
        if override.is_sweep_override():
            return list(override.sweep_string_iterator())
        return [override.get_value_element_as_str()]


def grid_names(experiment: str) -> list[str]:
    """The grids of ``experiment`` (``conf/sweep/<experiment>/*.yaml``), in name order (the order make runs them).

    Raises ``FileNotFoundError`` naming the folder when it has none.
    """
    folder = SWEEP_DIR / experiment
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    if not names:
        raise FileNotFoundError(f"experiment {experiment!r} has no sweep grids: add conf/sweep/{experiment}/<grid>"
                                f".yaml (hydra.sweeper.params); found {sorted(p.name for p in SWEEP_DIR.iterdir())}.")
    return names


def experiments_with_grids() -> list[str]:
    """Every experiment that has a grid folder under conf/sweep."""
    return sorted(p.name for p in SWEEP_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


@contextmanager
def hydra_compose() -> Iterator[None]:
    """Hydra's compose API on conf/ (the global instance is restored afterwards)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # e.g. inside another compose block: reuse it
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=VERSION_BASE):
        yield


def compose(overrides: Sequence[str], hydra_config: bool = False) -> DictConfig:
    """The config ``python -m spectune.train <overrides>`` would run (inside :func:`hydra_compose`)."""
    from hydra import compose as hydra_compose_fn

    return hydra_compose_fn(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)


@cache
def load_grids(experiment: str) -> tuple[Grid, ...]:
    """Every grid of ``experiment``, its params merged from the experiment and the grid file as Hydra merges them
    (composed once per process: conf/ does not change under a running driver)."""
    grids = []
    with hydra_compose():
        for name in grid_names(experiment):
            cfg = compose([f"experiment={experiment}", f"+sweep={experiment}/{name}"], hydra_config=True)
            params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) or {}
            grids.append(Grid(experiment, name, {str(k): str(v) for k, v in params.items()}))
    return tuple(grids)


def cells(experiment: str, extra: Sequence[str] = (), drop: Sequence[str] = ()) -> list[list[str]]:
    """The full override lists of every cell of every grid (``experiment=…``, ``+sweep=…`` included), without the
    overrides of the keys in ``drop`` and without repeats (e.g. ``drop=("task",)`` for the rows of a table)."""
    out: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for grid in load_grids(experiment):
        for job in grid.cells(extra):
            kept = [o for o in job if o.split("=", 1)[0].lstrip("+~") not in drop]
            if tuple(kept) not in seen:
                seen.add(tuple(kept))
                out.append(kept)
    return out


def cell_configs(experiment: str, drop: Sequence[str] = ()) -> list[DictConfig]:
    """The composed config of each cell of :func:`cells` (same order)."""
    with hydra_compose():
        return [compose(job) for job in cells(experiment, drop=drop)]


@cache
def table_rows(experiment: str) -> tuple[tuple[str, str, int | None], ...]:
    """(model, method, rank) of every cell, without repeats, in the order make runs them: the rows a table of the
    experiment expects (``rank`` is None for a method without ``r``)."""
    rows: list[tuple[str, str, int | None]] = []
    for cfg in cell_configs(experiment, drop=("task", "seed")):
        row = (str(cfg.model.name), str(cfg.method.name), cfg.method.get("r"))
        if row not in rows:
            rows.append(row)
    return tuple(rows)


@cache
def scale_of(experiment: str) -> str:
    """The scale the experiment runs at (``scale_name`` of its config: ``smoke`` or ``paper``)."""
    return str(experiment_config(experiment).scale_name)


@cache
def default_model(experiment: str) -> str:
    """The model the experiment's config selects without a grid (the one ``spectune.training.base_model`` scores)."""
    return str(experiment_config(experiment).model.name)


def experiment_config(experiment: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The experiment's config without any grid (the defaults its cells start from)."""
    with hydra_compose():
        return compose([f"experiment={experiment}", *overrides])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.grids <experiment>``: one line per cell (its overrides); ``--grids``: the names."""
    p = argparse.ArgumentParser(prog="python -m experiments.grids", description=(__doc__ or "").split("\n")[0])
    p.add_argument("experiment", nargs="?", help="an experiment with conf/sweep/<experiment>/ (default: list them)")
    p.add_argument("--grids", action="store_true", help="print the grid names only")
    args = p.parse_args(argv)
    if args.experiment is None:
        print("\n".join(experiments_with_grids()))
        return 0
    try:
        if args.grids:
            print("\n".join(grid_names(args.experiment)))
        else:
            for grid in load_grids(args.experiment):
                for job in grid.cells():
                    print(f"{grid.name}: {' '.join(job[:-2] if job[-2:] == grid.base_overrides else job)}")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
