"""SVF experts for Transformer²'s two-pass inference: loaded once, switched per pass, mixed by weights α.

Transformer² (Sun, Cetin, Tang 2025, ICLR 2025, §3.2) answers a query with z' chosen in a first pass: one expert's z
(prompt or classification-expert dispatch), the base model (the "others" class), or a mixture

    z' = Σ_k α_k z_k        (α per expert, or α_{k,m} per expert and adapted matrix m: z'_m = Σ_k α_{k,m} z_{k,m}).

:class:`ExpertModel` puts SVF layers on the base model once (``SVF.load_adapter`` with the first expert, its own
SVD) and then only rewrites z (``SVF.set_z``), so switching costs a few vector copies. Every z is the paper's z
after the expert's own mapping (``SVF.expert_z``: z = p for paper-form experts, sigmoid(p)·max_mult for official-form
ones), so a mixture mixes what single experts apply. The official few-shot code (commit 03a41ae,
``policy/weighted_combination.py`` ``get_mask`` returns p; ``utils.py`` ``compose_new_params``) mixes the raw p and
skips the sigmoid for mixtures only; this module does not.

The "others" class gets the base weights themselves: with ``base_weights="exact"`` the original ``nn.Linear``
modules are kept aside and swapped back in (logits bit-identical to the base model's; costs one copy of the adapted
matrices), with ``"unit_z"`` z = 1 through the SVF layers (W' = U diag(σ) Vᵀ = W up to rounding; no extra memory).
The official prompt-based evaluation (``utils.py`` ``eval_model_experts_prompt_based``, ``cfgs/mode/eval.yaml``'s
``other: null``) evaluated "other" with whichever expert was loaded last; here that cannot happen.

Experts may come from another base model of the same shapes (the paper's cross-model transfer, Table 5) only with
``allow_other_base=True`` (``SVF.load_adapter``'s rule, applied to every expert, not only the first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spectune.adaptation.settings import DOMAINS, OTHER, AdaptError, ExpertError
from spectune.adaptation.sources import TASK_DOMAINS, resolve_expert
from spectune.methods.svf import SVF, SvfSpec, base_identity, read_expert, svf_layers
from spectune.spectral import SVDCache


@dataclass
class Expert:
    """One SVF expert: where it came from, its domain, its z (paper's z, mapping applied) and file metadata."""

    source: str
    file: Path
    domain: str | None
    task: str | None
    z: dict[str, torch.Tensor]
    meta: dict[str, Any]
    sha256: str

    @property
    def targets(self) -> list[str]:
        return list(self.meta["targets"])

    def record(self) -> dict[str, Any]:
        """Provenance of the expert (JSON)."""
        base = self.meta.get("base", {})
        return {"source": self.source, "file": str(self.file), "sha256": self.sha256, "domain": self.domain,
                "task": self.task, "form": self.meta.get("form"), "targets": len(self.targets),
                "trained_on": {"name_or_path": base.get("name_or_path"), "fingerprint": base.get("fingerprint")}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_expert(path: str | Path, domain: str | None = None) -> Expert:
    """Read the expert at ``path`` (run folder, expert folder or file); ``domain`` overrides the run's task domain."""
    file, task = resolve_expert(path)
    try:
        _, meta = read_expert(file)
        z = SVF.expert_z(file)  # the paper's z: the expert's own mapping applied
    except (OSError, ValueError, KeyError) as err:
        raise ExpertError(f"{file} cannot be read as an SVF expert ({type(err).__name__}: {err}).") from None
    if meta.get("modules_to_save"):
        raise ExpertError(f"{file} also trains {meta['modules_to_save'][:3]} in full; Transformer²'s mixtures mix z "
                          "vectors only. Use experts without modules_to_save.")
    if domain is None and task is not None:
        domain = TASK_DOMAINS.get(task)
    return Expert(str(path), file, domain, task, z, meta, _sha256(file))


def load_experts(paths: Sequence[str | Path], domains: Sequence[str] | None = None) -> list[Expert]:
    """Experts of ``paths``; ``domains`` (one per path) override the domains their runs' tasks imply."""
    if not paths:
        raise ExpertError("No experts given: pass experts=[path1,path2,...] (SVF run folders or expert folders).")
    if domains is not None and len(domains) != len(paths):
        raise ExpertError(f"domains has {len(domains)} entries for {len(paths)} experts; give one domain per expert "
                          f"(one of {list(DOMAINS)}) or leave domains unset.")
    return [load_expert(p, None if domains is None else domains[i]) for i, p in enumerate(paths)]


def check_domains(experts: Sequence[Expert]) -> dict[str, int]:
    """{domain: expert index} for dispatch; refuses unknown, missing and repeated domains, naming the fix."""
    out: dict[str, int] = {}
    for i, e in enumerate(experts):
        if e.domain is None:
            raise ExpertError(f"Expert {e.source} has no domain (its run's task is unknown); set domains=[...] with "
                              f"one of {list(DOMAINS)} per expert.")
        if e.domain not in DOMAINS:
            raise ExpertError(f"Expert {e.source} has domain '{e.domain}'; Transformer²'s classification prompt knows "
                              f"{list(DOMAINS)} (and 'other', which means the base weights).")
        if e.domain in out:
            raise ExpertError(f"Experts {experts[out[e.domain]].source} and {e.source} both have domain '{e.domain}'; "
                              "the first pass picks one expert per domain.")
        out[e.domain] = i
    return out


class ExpertModel:
    """A base model carrying SVF layers for a set of experts, switched between base, one expert and mixtures.

    ``experts``: the task experts (index order = α order); ``extra``: experts used otherwise (the classification
    expert), held to the same rules. All must adapt the same matrices with the same rescale rule, and each z must fit
    the matrix it scales (k = min(d_out, d_in)).
    """

    def __init__(self, model: nn.Module, experts: Sequence[Expert], extra: Sequence[Expert] = (), *,
                 allow_other_base: bool = False, base_weights: str = "exact", svd_cache: SVDCache | None = None):
        if base_weights not in ("exact", "unit_z"):
            raise ExpertError(f"base_weights='{base_weights}' is not known; use exact or unit_z.")
        everyone = [*experts, *extra]
        if not everyone:
            raise ExpertError("ExpertModel needs at least one expert.")
        first = everyone[0]
        names, rescale = first.targets, bool(first.meta["rescale"])
        for e in everyone[1:]:
            if e.targets != names:
                raise ExpertError(f"Experts {first.source} and {e.source} adapt different matrices "
                                  f"({len(names)} vs {len(e.targets)}); mixtures and switching need one target set.")
            if bool(e.meta["rescale"]) != rescale:
                raise ExpertError(f"Experts {first.source} ({first.meta.get('form')} form) and {e.source} "
                                  f"({e.meta.get('form')} form) rescale differently (Σσ normalisation); use experts "
                                  "of one form.")
        modules = dict(model.named_modules())
        missing = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
        if missing:
            raise ExpertError(f"The experts adapt {missing[:3]}, which this {type(model).__name__} has no nn.Linear "
                              "of that name; they were trained on another architecture.")
        for e in everyone:
            for n in names:
                k = min(modules[n].weight.shape)
                if e.z[n].numel() != k:
                    raise ExpertError(f"Expert {e.source}: z of {n} has {e.z[n].numel()} entries but this model's "
                                      f"matrix has k = {k}: shapes differ, the expert cannot move to this model.")
        here = base_identity(model, names)
        others = [e for e in everyone if e.meta["base"].get("fingerprint") != here["fingerprint"]]
        if others and not allow_other_base:
            e = others[0]
            raise ExpertError(
                f"Expert {e.source} was trained on another base model ({e.meta['base'].get('name_or_path')}, "
                f"weights fingerprint {e.meta['base'].get('fingerprint')}); this one is {here['name_or_path']} "
                f"(fingerprint {here['fingerprint']}). Use the model it was trained on, or set allow_other_base=true "
                "to apply its z to this model's own singular vectors (cross-model transfer, same shapes).")
        self.model = model
        self.experts = list(experts)
        self.extra = list(extra)
        self.names = names
        self.base_weights = base_weights
        self.transferred = [e.source for e in others]
        self._plain = {n: modules[n] for n in names} if base_weights == "exact" else {}
        for lin in self._plain.values():
            lin.requires_grad_(False)
        method = SVF(SvfSpec(target_modules=list(names)), svd_cache=svd_cache)
        try:
            method.load_adapter(model, first.file, allow_other_base=allow_other_base)
        except ValueError as err:
            raise ExpertError(str(err)) from None
        self._svf = dict(svf_layers(model))
        self.state = "expert:0"
        self.use_base()

    # ------------------------------------------------------------------------------------------------ switching
    def _swap(self, plain: bool) -> None:
        if not self._plain:
            return
        for name in self.names:
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, self._plain[name] if plain else self._svf[name])

    def to(self, device: torch.device | str) -> ExpertModel:
        """Move the model and the kept base layers to ``device``."""
        self.model.to(device)
        for m in [*self._plain.values(), *self._svf.values()]:
            m.to(device)
        return self

    def use_base(self) -> None:
        """The base model's weights ("others"; the prompt strategy's first pass)."""
        if self.base_weights == "exact":
            self._swap(plain=True)
        else:
            self._swap(plain=False)
            SVF.set_z(self.model, {n: torch.ones_like(z) for n, z in self.experts_or_extra()[0].z.items()})
            # z = 1: W' = U diag(σ) Vᵀ (times Σσ/Σσ = 1 for rescaled experts) = W up to rounding.
        self.state = "base"

    def experts_or_extra(self) -> list[Expert]:
        return [*self.experts, *self.extra]

    def use_z(self, zs: dict[str, torch.Tensor], state: str) -> None:
        """Set z' of every adapted matrix (the paper's z, applied through the layers' identity mapping)."""
        self._swap(plain=False)
        SVF.set_z(self.model, zs)
        self.state = state

    def use_expert(self, expert: Expert | int) -> None:
        """One expert's z (an index into ``experts``, or any :class:`Expert` of this model, e.g. the classifier)."""
        e = self.experts[expert] if isinstance(expert, int) else expert
        if not any(e is x for x in self.experts_or_extra()):
            raise ExpertError(f"Expert {e.source} was not loaded onto this model.")
        self.use_z(e.z, f"expert:{e.source}")

    def mixture(self, alpha: Sequence[float] | torch.Tensor | Any) -> dict[str, torch.Tensor]:
        """z'_m = Σ_k α_{k,m} z_{k,m}: ``alpha`` of shape (K,) (per expert) or (K, M) (per expert and matrix, M =
        adapted matrices in :attr:`names` order)."""
        a = torch.as_tensor(alpha, dtype=torch.float64)
        k, m = len(self.experts), len(self.names)
        if a.shape == (k,):
            a = a[:, None].expand(k, m)
        elif a.shape != (k, m):
            raise ValueError(f"alpha must have shape ({k},) or ({k}, {m}); got {tuple(a.shape)}.")
        out = {}
        for j, name in enumerate(self.names):
            z = torch.zeros_like(self.experts[0].z[name], dtype=torch.float64)
            for i, e in enumerate(self.experts):
                z = z + a[i, j] * e.z[name].double()
            out[name] = z.float()
        return out

    def use_mixture(self, alpha: Sequence[float] | torch.Tensor | Any) -> None:
        """Set z' = Σ_k α_k z_k (see :meth:`mixture`)."""
        self.use_z(self.mixture(alpha), "mixture")


__all__ = ["DOMAINS", "AdaptError", "OTHER", "TASK_DOMAINS", "Expert", "ExpertError", "ExpertModel", "check_domains",
           "load_expert", "load_experts", "resolve_expert"]
