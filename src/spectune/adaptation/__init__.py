"""Transformer² two-pass inference (Sun, Cetin, Tang 2025, ICLR 2025, §3.2): a first pass picks or mixes SVF experts,
z' = z_k or z' = Σ_k α_k z_k, a second pass answers with W' = U diag(σ ⊙ z') Vᵀ.

- :mod:`~spectune.adaptation.cem`: a generic seeded CEM maximiser (the few-shot search over α);
- :mod:`~spectune.adaptation.experts`: loading experts (run folders or expert folders), switching base / expert /
  mixture on one model (``SVF.load_adapter``, ``SVF.set_z``), cross-model transfer (``allow_other_base``);
- :mod:`~spectune.adaptation.classify`: the official classification prompt and its parsing (first pass);
- :mod:`~spectune.adaptation.cls_data`: training data of the classification expert (expert tasks' train splits);
- :mod:`~spectune.adaptation.two_pass`: the three strategies (prompt, cls_expert, few_shot), scores and timings;
- :mod:`~spectune.adaptation.options`: the entry point's option checks.

Entry point: ``python -m spectune.adapt`` (docs/adapt.md).
"""

from spectune.adaptation.cem import CEMResult, CEMSettings, cem_maximize

__all__ = ["CEMResult", "CEMSettings", "cem_maximize"]
