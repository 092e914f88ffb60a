"""SVF, Singular Value Fine-tuning (Sun, Cetin, Tang 2025, "Transformer²", ICLR 2025; docs/methods.md, "SVF").

For every adapted matrix W = U Σ Vᵀ (reduced SVD, fp32, from the shared :class:`~spectune.spectral.SVDCache`, so
LoRA-Dash and SVF decompose a model once) one vector z ∈ R^k, k = min(d_out, d_in), is learned and

    W' = U diag(σ ⊙ z) Vᵀ                                   (paper, Eq. 1; ``form: paper``, z initialised to 1)
    W' = U diag(σ ⊙ z) Vᵀ · Σσ / Σ(σ ⊙ z),  z = sigmoid(p)·max_mult  (``form: official``, p ≈ 0.1 + 0.01·N(0, 1))

(the official code: github:SakanaAI/self-adaptive-llms, commit 03a41ae, ``policy/base.py`` and ``utils.py``'s
``compose_new_params``). With ``form: paper`` and z = 1 the model is the base model.

How it sits in the model. ``attach`` replaces each target ``nn.Linear`` by an
:class:`~spectune.methods.svf_layer.SVFLinear` holding U, σ, Vᵀ (non-persistent buffers, W is dropped) and the
trainable ``svf_z``; the forward and backward are factored (``SVFMatmul``), never a dense rebuild. The model stays
the transformers model it was (generation, the Trainer, gradient checkpointing work as before); its
``save_pretrained`` is replaced on the instance by one that writes the expert, so ``Trainer.save_model`` (which
passes the ZeRO-3-gathered state dict) and checkpoints write only the small expert file.

An expert (``svf_expert.safetensors``): the trainable vectors under their state-dict names (``<module>.svf_z``) and,
in the metadata, the form, the targets, the base model's identity (name, an architecture hash, a fingerprint of the
adapted weights — which determines their SVD) and the spec. ``load_adapter`` puts it on a base model and refuses a
different base unless ``allow_other_base=True`` (the paper's cross-model transfer: z is applied to that model's own
SVD). Mixtures for Transformer²'s adaptation: :meth:`SVF.expert_z`, :meth:`SVF.set_z`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import types
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from spectune.methods.base import Method
from spectune.methods.lora_dash_layer import distributed, gathered, model_identity
from spectune.methods.registry import register
from spectune.methods.svf_layer import S_BUF, U_BUF, VH_BUF, SVFLinear, Z
from spectune.methods.targets import resolve_targets
from spectune.spectral import SVD, SVDCache, svd

FORMS = ("paper", "official")
EXPERT_FILE = "svf_expert.safetensors"
RESUME_FILE = "model.safetensors"  # the same tensors, where the HF Trainer looks for them on resume
EXPERT_FORMAT = "spectune-svf-expert/1"
META_KEY = "spectune_svf"
FINGERPRINT_SAMPLES = 4096
CONFIG_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size", "head_dim")
SEQ_CLS_HEADS = ("classifier", "score")  # PEFT's modules_to_save for SEQ_CLS


@dataclass
class SvfSpec:
    """SVF hyper-parameters (Transformer², Eq. 1 and Table 6).

    ``form``: "paper" (z used as is, W' = U diag(σ ⊙ z) Vᵀ) | "official" (z = sigmoid(p)·``max_mult`` and W' rescaled
    by Σσ / Σ(σ ⊙ z), as github:SakanaAI/self-adaptive-llms). ``init`` / ``init_std``: the trainable vector starts at
    init + init_std·N(0, 1) (None: paper 1.0 / 0.0, official 0.1 / 0.01 — the official ``init_val`` and
    ``randn·0.01``); the noise is drawn from a generator seeded by (``seed``, matrix name). ``target_modules``: the
    adapted ``nn.Linear`` layers (official: MLP gate/up/down). ``svd_cache``: read/write the SVDs in the shared disk
    cache; ``svd_device``: where an SVD is computed ("auto": CUDA when available, else the weight's device; "weight";
    or a device name). ``modules_to_save``: modules trained in full and saved in the expert (None: the classifier head
    for task_type SEQ_CLS, as PEFT does; nothing for causal LMs).
    """

    target_modules: list[str] | str = field(default_factory=lambda: ["gate_proj", "up_proj", "down_proj"])
    form: str = "paper"
    init: float | None = None
    init_std: float | None = None
    max_mult: float = 1.0
    seed: int = 0
    svd_cache: bool = True
    svd_device: str = "auto"
    modules_to_save: list[str] | None = None

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"method.form='{self.form}' is not known; set method.form to one of {list(FORMS)}.")
        if not self.max_mult > 0:
            raise ValueError(f"method.max_mult={self.max_mult!r} must be > 0 (official: z = sigmoid(p)·max_mult).")
        if self.init_std is not None and not self.init_std >= 0:
            raise ValueError(f"method.init_std={self.init_std!r} must be >= 0, or null for the form's default.")
        if self.svd_device not in ("auto", "weight"):
            try:
                torch.device(self.svd_device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(f"method.svd_device='{self.svd_device}' is not a device; use auto, weight, cpu or "
                                 "cuda.") from err
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)

    def initial(self) -> tuple[float, float]:
        """(mean, std) of the trainable vector at the start: the spec's, else the form's default."""
        mean, std = (1.0, 0.0) if self.form == "paper" else (0.1, 0.01)
        return (mean if self.init is None else float(self.init), std if self.init_std is None else float(self.init_std))

    def layout(self) -> tuple[str, bool]:
        """(mapping, rescale) of the layers: paper ("identity", False), official ("sigmoid", True)."""
        return ("identity", False) if self.form == "paper" else ("sigmoid", True)


# ------------------------------------------------------------------------------------------------ helpers
def svf_layers(model: nn.Module) -> list[tuple[str, SVFLinear]]:
    """(module name, layer) of every SVF layer, in module order (names as in the model's state dict)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SVFLinear)]


def _stored_z(layer: SVFLinear) -> torch.Tensor:
    """The trainable vector p, fp32 on the CPU (gathered under ZeRO-3)."""
    p = getattr(layer, Z)
    with gathered([p]):
        return p.detach().float().cpu().clone()


def sample_indices(numel: int, n: int = FINGERPRINT_SAMPLES) -> torch.Tensor:
    """min(n, numel) evenly spaced indices into a flat tensor of ``numel`` entries, first and last included
    (integer arithmetic: exact for any size, where a float32 ``linspace`` overshoots past 2²⁴ entries)."""
    m = min(n, numel)
    return torch.arange(m, dtype=torch.int64) * (numel - 1) // max(m - 1, 1)


def weights_fingerprint(model: nn.Module, names: list[str]) -> str:
    """blake2b of each named matrix's name, shape and up to 4,096 evenly spaced entries (as float32).

    Identifies the adapted weights, hence their SVD, without hashing every byte; a model stored in bf16 and loaded
    in fp32 or bf16 gives the same fingerprint. Gathers ZeRO-3 partitions.
    """
    modules = dict(model.named_modules())
    h = hashlib.blake2b(digest_size=16)
    for name in names:
        w = modules[name].weight
        with gathered([w]):
            flat = w.detach().reshape(-1)
            sample = flat[sample_indices(flat.numel()).to(flat.device)].float().cpu().contiguous()
            h.update(f"{name}|{tuple(w.shape)}|".encode())
            h.update(memoryview(sample.numpy()).cast("B"))
    return h.hexdigest()


def config_identity(model: nn.Module) -> dict[str, Any]:
    """The architecture fields of ``model.config`` that decide shapes (JSON-able; empty for a plain module)."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    return {k: getattr(cfg, k) for k in CONFIG_KEYS if isinstance(getattr(cfg, k, None), (int, str))}


def base_identity(model: nn.Module, names: list[str]) -> dict[str, Any]:
    """{name_or_path, config, config_hash, fingerprint} of the base model's adapted matrices."""
    conf = config_identity(model)
    return {"name_or_path": model_identity(model), "config": conf,
            "config_hash": hashlib.blake2b(json.dumps(conf, sort_keys=True).encode(), digest_size=8).hexdigest(),
            "fingerprint": weights_fingerprint(model, names)}


def _matching(names: list[str], patterns: list[str]) -> list[str]:
    return [n for n in names if any(n == t or n.endswith("." + t) for t in patterns)]


def read_expert(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of the expert in ``folder`` (or the expert file itself)."""
    from safetensors import safe_open

    path = Path(folder)
    path = path / EXPERT_FILE if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {Path(folder)} holds no SVF expert (saved by method=svf).")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(META_KEY, "null") or "null")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    if not isinstance(meta, dict) or meta.get("format") != EXPERT_FORMAT:
        raise ValueError(f"{path} is not a spectune SVF expert (no '{META_KEY}' metadata of format {EXPERT_FORMAT}).")
    return tensors, meta


def _save_pretrained(self: nn.Module, save_directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None,
                     is_main_process: bool = True, **_: Any) -> None:
    """Instance replacement of ``PreTrainedModel.save_pretrained`` on an SVF model: writes the expert only.

    ``Trainer.save_model`` and the Trainer's checkpoints call it (under DeepSpeed with the gathered state dict).
    """
    if is_main_process:
        write_expert(self, save_directory, state_dict)


def write_expert(model: nn.Module, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``svf_expert.safetensors`` (and the same tensors as ``model.safetensors`` for a Trainer resume).

    Values come from ``state_dict`` when it holds them (the Trainer's, gathered under ZeRO-3), else from the model
    (gathered: collective under ZeRO-3, so call it on every rank there).
    """
    from safetensors.torch import save_file

    meta = getattr(model, "_svf_meta", None)
    if meta is None:
        raise ValueError("This model carries no SVF layers' record; attach SVF (or load an expert) first.")
    params = dict(model.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    for key in [f"{n}.{Z}" for n, _ in svf_layers(model)] + list(meta["modules_to_save"]):
        if state_dict is not None and key in state_dict:
            value = state_dict[key]
        else:
            p = params[key]
            if state_dict is not None and hasattr(p, "ds_id"):
                raise RuntimeError(f"The state dict to save lacks {key} (a ZeRO-3 partition): set "
                                   "stage3_gather_16bit_weights_on_model_save true in the DeepSpeed config.")
            with gathered([p]):
                value = p.detach().clone()
        tensors[key] = value.detach().float().cpu().contiguous() if key.endswith(Z) else \
            value.detach().cpu().contiguous()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", META_KEY: json.dumps(meta, default=str)}
    save_file(tensors, str(folder / EXPERT_FILE), metadata=metadata)
    save_file(tensors, str(folder / RESUME_FILE), metadata={"format": "pt"})
    return folder / EXPERT_FILE


# ------------------------------------------------------------------------------------------------ the method
@register("svf", spec=SvfSpec, display="SVF",
          description="Singular Value Fine-tuning (Transformer²): W' = U diag(σ⊙z) Vᵀ, one trainable z per matrix")
class SVF(Method):
    """SVF. Life cycle: ``attach`` (replace targets by SVF layers) → train z → ``save_adapter`` (the expert) →
    ``load_adapter`` / ``merged``. No callbacks: nothing is scheduled during training.
    """

    weight_decay_ok: ClassVar[bool] = False  # AdamW's decay would shrink z, i.e. W' = U diag(σ⊙z) Vᵀ towards 0

    def __init__(self, spec: SvfSpec | None = None, svd_cache: SVDCache | None = None):
        spec = spec if spec is not None else SvfSpec()
        if not isinstance(spec, SvfSpec):
            raise TypeError(f"SVF needs an SvfSpec; got {type(spec).__name__}.")
        self.spec = spec
        self._svd_cache = svd_cache

    # ----------------------------------------------------------------------------------------------- attach
    def attach(self, model: nn.Module, task_type: str | None) -> nn.Module:
        names = self.target_names(model, self.spec.target_modules)
        heads = self.spec.modules_to_save
        if heads is None:
            heads = list(SEQ_CLS_HEADS) if task_type == "SEQ_CLS" else []
        mapping, rescale = self.spec.layout()
        self.install(model, names, mapping=mapping, rescale=rescale, max_mult=self.spec.max_mult, zs=None,
                     trainable=True, modules_to_save=heads, collective=distributed())
        return model

    @staticmethod
    def target_names(model: nn.Module, targets: list[str] | str) -> list[str]:
        """Module names of the ``nn.Linear`` layers ``targets`` selects (PEFT's matching rule; errors name the fix)."""
        if svf_layers(model):
            raise RuntimeError("This model already carries SVF layers (attach called twice, or an expert loaded).")
        chosen = {id(m) for m in resolve_targets(model, targets)}
        return [n for n, m in model.named_modules() if id(m) in chosen]

    def install(self, model: nn.Module, names: list[str], *, mapping: str, rescale: bool, max_mult: float,
                zs: dict[str, torch.Tensor] | None, trainable: bool, modules_to_save: list[str],
                base: dict[str, Any] | None = None, collective: bool = False) -> None:
        """Replace each named ``nn.Linear`` by an :class:`SVFLinear` (SVD from the cache) and freeze the rest.

        ``zs``: the trainable vectors by module name (None: drawn from the spec's init). ``base``: the identity to
        record (None: computed from ``model``). ``collective``: every rank calls this (``attach`` under several
        processes): rank 0 fills the SVD cache first; otherwise no collective is issued (a rank-0-only load).
        """
        for n in names:
            m = model.get_submodule(n)
            if type(m) is not nn.Linear:
                raise ValueError(f"SVF adapts nn.Linear layers only; {n} is a {type(m).__name__}. Remove it from "
                                 "method.target_modules.")
        self._refuse_tied(model, names)
        record = base if base is not None else base_identity(model, names)
        mean, std = self.spec.initial()
        # One matrix at a time, holding no reference to a replaced nn.Linear: its W is freed as its U, σ, Vᵀ arrive.
        for name, f in self._svds(model, names, collective):
            w = model.get_submodule(name).weight
            dev, dt = w.device, w.dtype
            k = int(f.S.numel())
            if zs is not None:
                z = zs[name].detach().float()
                if z.shape != (k,):
                    raise ValueError(f"The expert's z for {name} has {z.numel()} entries; this model's matrix has "
                                     f"k = min{tuple(f.shape)} = {k}.")
            else:
                z = torch.full((k,), mean)
                if std > 0:
                    g = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + zlib.crc32(name.encode()))
                    z = z + std * torch.randn(k, generator=g)
            layer = SVFLinear(f.U.to(device=dev, dtype=dt), f.S.to(device=dev, dtype=torch.float32),
                              f.Vh.to(device=dev, dtype=dt), model.get_submodule(name).bias, z.to(dev),
                              mapping=mapping, max_mult=max_mult, rescale=rescale)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
            del f, layer, w
        for p in model.parameters():
            p.requires_grad_(False)
        heads = self._heads(model, modules_to_save)
        for _, layer in svf_layers(model):
            getattr(layer, Z).requires_grad_(trainable)
        params = dict(model.named_parameters())
        for key in heads:
            params[key].requires_grad_(trainable)
        form = {("identity", False): "paper", ("sigmoid", True): "official"}.get((mapping, rescale), "custom")
        model._svf_meta = {
            "format": EXPERT_FORMAT, "form": form, "mapping": mapping, "rescale": rescale,
            "max_mult": float(max_mult), "targets": list(names),
            "modules_to_save": heads, "base": record,
            "svd": {"dtype": "float32", "source": "spectune.spectral.svd (torch.linalg.svd), cached by SVDCache"},
            "spec": asdict(self.spec),
        }
        # The Trainer (and anyone) saving this model writes the expert, not a whole model without its W's.
        model.save_pretrained = types.MethodType(_save_pretrained, model)
        # DDP would broadcast every buffer at every forward: U, σ, Vᵀ are identical on all ranks already.
        ignore = [f"{n}.{b}" for n, _ in svf_layers(model) for b in (U_BUF, S_BUF, VH_BUF)]
        model._ddp_params_and_buffers_to_ignore = ignore

    @staticmethod
    def _heads(model: nn.Module, modules_to_save: list[str]) -> list[str]:
        """Parameter names of the ``modules_to_save`` modules (trained in full, saved in the expert)."""
        if not modules_to_save:
            return []
        mods = [n for n, _ in model.named_modules()]
        chosen = _matching(mods, list(modules_to_save))
        return [f"{m}.{p}" for m in chosen for p, _ in dict(model.named_modules())[m].named_parameters()]

    @staticmethod
    def _refuse_tied(model: nn.Module, names: list[str]) -> None:
        owners: dict[int, list[str]] = {}
        for pname, p in model.named_parameters(remove_duplicate=False):
            owners.setdefault(id(p), []).append(pname)
        modules = dict(model.named_modules())
        for n in names:
            tied = owners.get(id(modules[n].weight), [])
            if len(tied) > 1:
                raise ValueError(f"{n}.weight is shared with {[t for t in tied if t != n + '.weight']} (tied "
                                 "weights); SVF would untie them. Remove it from method.target_modules.")

    # ----------------------------------------------------------------------------------------------- SVD
    def _svd_device(self, weight: torch.Tensor) -> torch.device:
        d = self.spec.svd_device
        if d == "auto":
            return torch.device("cuda") if torch.cuda.is_available() and weight.device.type == "cpu" else weight.device
        return weight.device if d == "weight" else torch.device(d)

    def _svds(self, model: nn.Module, names: list[str], collective: bool = False) -> Iterator[tuple[str, SVD]]:
        """(name, fp32 SVD of its weight) one matrix at a time, from the disk cache when ``svd_cache``.

        Each SVD is computed on ``svd_device`` and left there (the caller moves it to the weight and drops it before
        the next: never all of a model's factors at once). ``collective`` (all ranks call it, in the same order):
        with the cache, rank 0 fills it and the others read it after a barrier (one set of factors for all);
        without it, rank 0's factors are broadcast.
        """
        model_id = model_identity(model)
        multi = collective and distributed()
        rank = torch.distributed.get_rank() if multi else 0
        cache = None
        if self.spec.svd_cache:
            cache = self._svd_cache = self._svd_cache or SVDCache()
        if multi and cache is not None and rank != 0:
            torch.distributed.barrier()  # wait for rank 0 to fill the cache
        for name in names:
            w = model.get_submodule(name).weight
            with gathered([w]):
                wd = w.detach().to(self._svd_device(w))
                f = cache.get(model_id, f"{name}.weight", wd) if cache is not None else svd(wd)
            del w, wd
            if multi and cache is None:
                gpu = torch.distributed.get_backend() == "nccl"
                bufs = [t.cuda() if gpu else t.contiguous() for t in (f.U, f.S, f.Vh)]
                for b in bufs:
                    torch.distributed.broadcast(b, src=0)
                f = SVD(*bufs)
            yield name, f
        if multi and cache is not None and rank == 0:
            torch.distributed.barrier()

    # ----------------------------------------------------------------------------------------------- save / load
    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """The expert file (``svf_expert.safetensors``); collective under ZeRO-3 (z is gathered)."""
        write_expert(model, folder)

    def save_extras(self, model: nn.Module, folder: Path) -> None:
        """Nothing when ``Trainer.save_model`` already wrote the expert (through the model's ``save_pretrained``)."""
        if not (Path(folder) / EXPERT_FILE).exists():
            write_expert(model, folder)

    def load_adapter(self, base_model: nn.Module, folder: str | Path, is_trainable: bool = False,
                     allow_other_base: bool = False) -> nn.Module:
        """Put the expert in ``folder`` on ``base_model`` (its own SVD; the expert's form and targets).

        A base whose adapted weights differ from the expert's (fingerprint) is refused unless ``allow_other_base``:
        then z is applied to this model's own U, σ, V (the paper's cross-model transfer, Table 5); the matrices must
        exist and have the same k = min(d_out, d_in).
        """
        tensors, meta = read_expert(folder)
        names = list(meta["targets"])
        modules = dict(base_model.named_modules())
        missing = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
        if missing:
            raise ValueError(f"The expert in {folder} adapts {missing[:3]}{'…' if len(missing) > 3 else ''}, which "
                             f"{type(base_model).__name__} has no nn.Linear of that name; it was trained on "
                             f"{meta['base'].get('name_or_path')}.")
        zs = {n: tensors[f"{n}.{Z}"] for n in names}
        for n in names:
            k = min(modules[n].weight.shape)
            if zs[n].numel() != k:
                raise ValueError(f"The expert's z for {n} has {zs[n].numel()} entries but this model's matrix has "
                                 f"k = {k}: shapes differ, the expert cannot move to this model.")
        here = base_identity(base_model, names)
        trained_on = meta["base"]
        if here["fingerprint"] != trained_on.get("fingerprint"):
            if not allow_other_base:
                raise ValueError(
                    f"The SVF expert in {folder} was trained on another base model: {trained_on.get('name_or_path')} "
                    f"(config {trained_on.get('config')}, weights fingerprint {trained_on.get('fingerprint')}); this "
                    f"one is {here['name_or_path']} (config {here['config']}, fingerprint {here['fingerprint']}). Load "
                    "it onto the model it was trained on, or pass allow_other_base=True to apply its z to this "
                    "model's own singular vectors (cross-model transfer).")
            here["transferred_from"] = trained_on
        heads = list(meta.get("modules_to_save", []))
        self.install(base_model, names, mapping=meta["mapping"], rescale=bool(meta["rescale"]),
                     max_mult=float(meta["max_mult"]), zs=zs, trainable=is_trainable, modules_to_save=[],
                     base=here)
        if heads:
            params = dict(base_model.named_parameters())
            absent = [h for h in heads if h not in params]
            if absent:
                raise ValueError(f"The expert trains {absent[:3]}, which this model does not have.")
            with torch.no_grad():
                for h in heads:
                    params[h].copy_(tensors[h].to(device=params[h].device, dtype=params[h].dtype))
                    params[h].requires_grad_(is_trainable)
            base_model._svf_meta["modules_to_save"] = heads
        base_model._svf_meta["spec"] = meta.get("spec", base_model._svf_meta["spec"])
        return base_model

    # ----------------------------------------------------------------------------------------------- mixtures
    @staticmethod
    def expert_params(folder: str | Path) -> dict[str, torch.Tensor]:
        """{module name: the stored trainable vector p} of an expert (fp32; the official code's raw parameters)."""
        tensors, meta = read_expert(folder)
        return {n: tensors[f"{n}.{Z}"].float() for n in meta["targets"]}

    @staticmethod
    def expert_z(folder: str | Path) -> dict[str, torch.Tensor]:
        """{module name: the paper's z} of an expert: p (identity mapping) or sigmoid(p)·max_mult (official), before
        the Σσ rescale (applied by the layer). Transformer²'s mixtures are z' = Σ_k α_k z_k over these."""
        tensors, meta = read_expert(folder)
        out = {}
        for n in meta["targets"]:
            p = tensors[f"{n}.{Z}"].float()
            out[n] = p if meta["mapping"] == "identity" else torch.sigmoid(p) * float(meta["max_mult"])
        return out

    @staticmethod
    def get_z(model: nn.Module) -> dict[str, torch.Tensor]:
        """{module name: the current z} (fp32 CPU, mapping applied, before any rescale)."""
        return {n: layer.multipliers().detach().cpu() for n, layer in svf_layers(model)}

    @staticmethod
    @torch.no_grad()
    def set_z(model: nn.Module, zs: dict[str, torch.Tensor]) -> None:
        """Set the paper's z of every SVF layer (e.g. a mixture Σ_k α_k z_k of :meth:`expert_z`).

        The layers then use z as given (identity mapping) and keep their rescale (official experts: Σσ-normalised),
        so a mixture of official experts mixes sigmoid(p)·max_mult, not the raw p (docs/methods.md, "SVF").
        Every SVF layer must get a vector of its k entries.
        """
        layers = dict(svf_layers(model))
        if set(zs) != set(layers):
            raise ValueError(f"set_z needs one z per SVF layer: missing {sorted(set(layers) - set(zs))[:3]}, unknown "
                             f"{sorted(set(zs) - set(layers))[:3]}.")
        for n, layer in layers.items():
            p = getattr(layer, Z)
            z = torch.as_tensor(zs[n]).detach()
            if z.shape != p.shape:
                raise ValueError(f"z for {n} has shape {tuple(z.shape)}; the layer needs {tuple(p.shape)}.")
            p.copy_(z.to(device=p.device, dtype=p.dtype))
            layer.mapping = "identity"
        meta = getattr(model, "_svf_meta", None)
        if meta is not None:
            meta["mapping"] = "identity"
            meta["form"] = "paper" if not meta["rescale"] else "custom"

    # ----------------------------------------------------------------------------------------------- objectives
    @contextmanager
    def base_model_context(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block every SVF layer computes W = U diag(σ) Vᵀ (z's effect off: the paper's z = 1, the
        official form without its Σσ rescale, which is then 1), the base policy π_base of the KL term; z itself is
        not touched, so its gradient and optimizer state are unaffected. W equals the original weight up to the
        fp32 SVD's rounding."""
        layers = [layer for _, layer in svf_layers(model)]
        if not layers:
            raise ValueError("This model carries no SVF layers; attach SVF (or load an expert) first.")
        before = [layer.base_only for layer in layers]
        try:
            for layer in layers:
                layer.base_only = True
            yield model
        finally:
            for layer, flag in zip(layers, before, strict=True):
                layer.base_only = flag

    # ----------------------------------------------------------------------------------------------- analyses
    def update_factors(self, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """ΔW = W' − W = U diag(s − σ) Vᵀ as (B, A) = (U_J diag((s − σ)_J), Vᵀ_J) over J = {i : s_i ≠ σ_i}; fp32 CPU.

        s = σ ⊙ z (times Σσ / Σ(σ ⊙ z) for official experts). Collective under ZeRO-3 (z is gathered).
        """
        out = {}
        for name, layer in svf_layers(model):
            p = getattr(layer, Z)
            with gathered([p]), torch.no_grad():
                s = layer.scale().detach().float().cpu()
            sigma = getattr(layer, S_BUF).detach().float().cpu()
            d = s - sigma
            keep = d != 0
            U = getattr(layer, U_BUF).detach().float().cpu()
            Vh = getattr(layer, VH_BUF).detach().float().cpu()
            out[name] = ((U[:, keep] * d[keep]).contiguous(), Vh[keep].contiguous())
        return out

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        """The form and summary statistics of the learned z (all matrices together and per matrix)."""
        zs = {n: layer.multipliers().detach().float().cpu() for n, layer in svf_layers(model)}
        if not zs:
            return {"form": self.spec.form, "matrices": 0}
        allz = torch.cat(list(zs.values()))

        def stats(z: torch.Tensor) -> dict[str, float]:
            return {"mean": float(z.mean()), "std": float(z.std()) if z.numel() > 1 else 0.0,
                    "min": float(z.min()), "max": float(z.max())}

        return {"form": self.spec.form, "matrices": len(zs), "z": stats(allz),
                "per_matrix": {n: stats(z) for n, z in zs.items()}}

    # ----------------------------------------------------------------------------------------------- merge
    @torch.no_grad()
    def merged(self, model: nn.Module) -> nn.Module:
        """A plain copy with W' = U diag(s) Vᵀ written into ordinary ``nn.Linear`` weights (the model untouched).

        U, σ, Vᵀ are never copied: each SVF layer maps to its new ``nn.Linear`` in deepcopy's memo.
        """
        memo: dict[int, Any] = {}
        for _, layer in svf_layers(model):
            U = getattr(layer, U_BUF)
            lin = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=U.device,
                            dtype=U.dtype)
            lin.weight.copy_(layer.dense_weight(U.dtype))
            if layer.bias is not None:
                lin.bias.copy_(layer.bias)
            lin.requires_grad_(False)
            memo[id(layer)] = lin
        out = copy.deepcopy(model, memo)
        for attr in ("save_pretrained", "_svf_meta", "_ddp_params_and_buffers_to_ignore"):
            out.__dict__.pop(attr, None)
        return out
