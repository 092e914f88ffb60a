"""Table and figure drivers: read run folders (docs/run-folder.md), write ``results/``; they never train.

Run a driver from the repository root, e.g. ``python -m experiments.glue_ft_vs_lora --runs runs/glue_ft_vs_lora``.
The cells of each table are its experiment's sweep grids in ``conf/sweep/`` (:mod:`experiments.grids`); reading,
provenance and rendering are shared (:mod:`experiments.report`). Nothing here imports ``spectune.training``.
"""
