"""Reporting shared by every table and figure driver in ``experiments/``.

- :mod:`experiments.report.vocabulary`: method names and labels (from the method registry), model and task names.
- :mod:`experiments.report.provenance`: the one provenance collector (commits and dirty trees, hardware, seeds, data,
  settings, runtimes, command); refuses runs of mixed commits unless ``--allow-mixed-commits``.
- :mod:`experiments.report.table`: the generic table (rows of our runs beside the paper's, cells over seeds).
- :mod:`experiments.report.render`: the one renderer (Markdown, CSV through the ``csv`` module, captions, atomic files).
- :mod:`experiments.report.cli`: the command-line options every driver shares.

Import the submodules (this package imports nothing itself: :mod:`experiments.runs` uses the vocabulary).
"""
