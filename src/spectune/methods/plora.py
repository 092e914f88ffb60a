"""PeriodicLoRA / PLoRA (Meng et al. 2024) on PEFT's LoRA: training in stages, the adapter unloaded into W at each
stage boundary, so the accumulated update exceeds rank r at LoRA's memory (methods.md, "PeriodicLoRA").

Within a stage the model is plain PEFT LoRA, h = W x + s·B A drop(x), s = α/r. At a boundary, for every adapted
matrix (all of it on the weights the optimizer really updates, see ``spectune.methods.optim_state``):

- plain unload (``momentum: 0``):   W ← W + s·B A;   A ← kaiming_uniform(a=√5) (U(−1/√d_in, 1/√d_in));   B ← 0;
- momentum unload (0 < m < 1), m in the seed's sense (the share that STAYS in the adapter: "BA is scaled by (1 − m),
  A and B by m"):  W ← W + (1−m)·s·B A;  A ← c·A,  B ← c·B,  with c = m (``momentum_split: linear``, the seed's and
  the first author's trainer's formula: m²·s·B A stays, the function changes) or c = √m (``sqrt``, OURS: m·s·B A
  stays, so the model's function is unchanged). That trainer (CCCarloooo/FastChat,
  fastchat/train/plora_trainer_now.py) names the merged share instead: ``--plora_momentum_ratio 0.1`` = 1 − m, i.e.
  m = 0.9 here (methods.md, "PeriodicLoRA");
- optimizer moments of A and B: ``reset`` (exact: as at step 0) or ``prune`` (the authors' random zeroing of all but
  ``prune_keep`` = 0.1% of the entries);
- learning-rate schedule: ``continue`` (the authors: constant LR) or ``restart`` (λ(step − b), b the last boundary).

Boundaries (counted in optimizer steps, driven by :class:`PLoRACallback`, never by forward calls): every
``unload_every`` steps (or ``unload_every_examples`` examples, converted with the global batch; paper 4.8k = 200 steps
at batch 24), and at each epoch end (``unload_at_epoch_end``); never after the final step, so the last stage is the
saved PEFT adapter. The re-initialised A is drawn from a generator seeded by (seed, stage, layer), so all ranks and a
resumed run draw the same.

Accumulated update after k unloads: W_now − W_0 = Σ_j B̃_j A_j + s·B A, B̃_j = μ_j·s·B_j (μ_j = 1 − m, or 1 for a
plain unload). The factors (B̃_j, A_j) are kept (CPU, fp32) as the stage history: rank analyses use them without forming
dense matrices (``spectune.spectral.rank_stats_lowrank``), checkpoints and the saved adapter carry them
(``plora_stages.safetensors``), and :meth:`PeriodicLoRA.load_adapter` rebuilds the partially merged base W_0 + Σ_j
B̃_j A_j from them before attaching the last stage's PEFT adapter. Under bf16 training W itself carried bf16 rounding
of each merge; the rebuilt base is the fp32 sum (the run's ``merged/`` export holds the trained weights exactly).
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spectune.errors import ConfigError
from spectune.methods.lora import LoRA, LoraSpec, base_name, lora_factors, lora_layers
from spectune.methods.optim_state import editable, reset_moments, set_trainable
from spectune.methods.registry import register

log = logging.getLogger(__name__)

MOMENTUM_SPLITS = ("sqrt", "linear")
MOMENT_MODES = ("reset", "prune")
SCHEDULES = ("continue", "restart")
STAGES_FILE = "plora_stages.safetensors"
CONFIG_FILE = "plora_config.json"


@dataclass
class PLoraSpec(LoraSpec):
    """LoRA's hyper-parameters plus the stage schedule (see the module docstring for every symbol).

    ``unload_every``: stage length in optimizer steps; ``unload_every_examples``: the same in training examples
    (exclusive with ``unload_every``; must be a multiple of the global batch); ``unload_at_epoch_end``: also unload
    after each epoch's last step; ``momentum``: m ∈ [0, 1), the seed's m, the share kept in the adapter (1 − m is
    merged; 0 for the plain unload); ``momentum_split``: "sqrt" (A, B ← √m·A, √m·B; ours) | "linear" (m·A, m·B);
    ``moments``: "reset" | "prune"; ``prune_keep``: share of moment entries kept by "prune"; ``schedule``:
    "continue" | "restart"; ``seed``: seeds the re-initialisation of A.
    """

    unload_every: int | None = 200
    unload_every_examples: int | None = None
    unload_at_epoch_end: bool = True
    momentum: float = 0.0
    momentum_split: str = "sqrt"
    moments: str = "reset"
    prune_keep: float = 0.001
    schedule: str = "continue"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unload_every is not None and self.unload_every_examples is not None:
            raise ValueError("Give the PLoRA stage length once: method.unload_every (optimizer steps) or "
                             "method.unload_every_examples (examples), and set the other to null.")
        for key in ("unload_every", "unload_every_examples"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"method.{key}={v!r} must be a positive integer or null.")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"method.momentum={self.momentum} must be in [0, 1): m is the share kept in the adapter "
                             "(the seed's m): 0 is the plain unload, m>0 merges (1-m)·sBA into W and scales A, B by m "
                             "(linear) or √m (sqrt); m=1 merges nothing. The FastChat script's "
                             "--plora_momentum_ratio 0.1 is method.momentum=0.9.")
        for key, allowed in (("momentum_split", MOMENTUM_SPLITS), ("moments", MOMENT_MODES),
                             ("schedule", SCHEDULES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"method.{key}={getattr(self, key)!r} is not one of {allowed}.")
        if not 0.0 < self.prune_keep <= 1.0:
            raise ValueError(f"method.prune_keep={self.prune_keep} must be in (0, 1].")

    def keep_factor(self) -> float:
        """c, the factor on A and on B after a momentum unload: √m (``sqrt``: m·sBA stays) or m (``linear``: m²·sBA)."""
        return math.sqrt(self.momentum) if self.momentum_split == "sqrt" else self.momentum

    def merged_share(self) -> float:
        """μ, the share of s·BA merged into W at an unload: 1 − m, or 1 for the plain unload (m = 0)."""
        return 1.0 - self.momentum if self.momentum > 0 else 1.0


def kaiming_uniform_a_sqrt5(shape: tuple[int, int], generator: torch.Generator,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """PEFT's / nn.Linear's init of A (r×d_in): kaiming_uniform(a=√5) = U(−b, b), b = gain·√(3/fan_in) with
    gain = √(2/(1+a²)) = √(1/3), i.e. b = 1/√d_in; drawn in fp32 from the CPU ``generator`` (the same numbers on
    every device), then mapped to (−b, b) on ``device``: the same values bit for bit (one rounding per elementwise
    op either way), but the host does only the draw (on a busy GPU host the mapping's two multiplies and a subtract
    took ~0.9 s of a ~1.1 s unload, benchmarks/NOTES.md)."""
    bound = 1.0 / math.sqrt(shape[1])
    u = torch.rand(shape, generator=generator, dtype=torch.float32)
    if device is not None:
        u = u.to(device)
    return (u * 2.0 - 1.0) * bound


@register("plora", spec=PLoraSpec, display="PeriodicLoRA",
          description="PeriodicLoRA (LoRA unloaded into W every stage)")
class PeriodicLoRA(LoRA):
    """PEFT LoRA trained in stages; :meth:`unload` is the stage boundary, :class:`PLoRACallback` drives it."""

    def __init__(self, spec: PLoraSpec):
        super().__init__(spec)
        self.spec: PLoraSpec = spec
        # Stage history: one entry per unload; factors[layer] = [(B̃_j, A_j), …] on CPU in fp32.
        self.stages: list[dict[str, Any]] = []
        self.factors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def check_schedule(self, total_steps: int, epochs: float | None = None) -> None:
        """At least one stage boundary must fall before the last step, or the run is plain LoRA under PLoRA's name."""
        every = self.spec.unload_every
        epoch_ends = self.spec.unload_at_epoch_end and epochs is not None and epochs > 1
        if (every is None or every >= total_steps) and not epoch_ends and self.spec.unload_every_examples is None:
            raise ConfigError(
                f"method.unload_every={every} with {total_steps} optimizer steps and no epoch boundary: PeriodicLoRA "
                "would never unload and the run would be plain LoRA under the PLoRA label. Set method.unload_every "
                f"< {total_steps}, or train more than one epoch with method.unload_at_epoch_end=true.")

    def callbacks(self, log_event: Any = None) -> list[Any]:
        from spectune.methods.plora_schedule import PLoRACallback

        return [PLoRACallback(self, log_event)]

    # ------------------------------------------------------------------------------------------------ unload
    def _generator(self, stage: int, name: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.spec.seed * 1_000_003 + stage * 7919 + zlib.crc32(name.encode()))

    @torch.no_grad()
    def unload(self, model: nn.Module, step: int, optimizer: Any = None, reason: str = "interval") -> dict[str, Any]:
        """End the current stage: merge into W, re-initialise or scale A and B, reset their optimizer state.

        ``optimizer``: the Trainer's optimizer (plain torch, accelerate-wrapped, or DeepSpeed's); needed to reset
        moments outside DeepSpeed. Collective under DeepSpeed ZeRO-3 (every rank must call it). Returns the stage's
        record (also appended to ``self.stages``).
        """
        m = self.spec.momentum
        stage = len(self.stages) + 1
        merged_sq = 0.0
        params: list[nn.Parameter] = []
        for name, layer in lora_layers(model):
            key = base_name(name)
            A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            W = layer.get_base_layer().weight
            s = float(layer.scaling["default"])
            with editable([W, A, B]):
                # On W's device (the merge is a d_out×d_in product); only the r-wide factors go to the CPU.
                a32, b32 = A.detach().to(W.device, torch.float32), B.detach().to(W.device, torch.float32)
                b_merged = b32 * (self.spec.merged_share() * s)  # B̃ = (1−m)·s·B (plain, m = 0: s·B)
                delta = b_merged @ a32
                if getattr(layer, "fan_in_fan_out", False):
                    delta = delta.mT
                W.add_(delta)  # computed in float32, rounded once to W's dtype: (W.float() + ΔW).to(W.dtype), no copies
                if m > 0:
                    c = self.spec.keep_factor()
                    new_a, new_b = a32 * c, b32 * c
                else:
                    new_a = kaiming_uniform_a_sqrt5(tuple(a32.shape), self._generator(stage, key), device=W.device)
                    new_b = torch.zeros_like(b32)
                self.factors.setdefault(key, []).append((b_merged.to("cpu", copy=True), a32.to("cpu", copy=True)))
                merged_sq += float(torch.linalg.vector_norm(delta) ** 2)
                A.copy_(new_a.to(device=A.device, dtype=A.dtype))
                B.copy_(new_b.to(device=B.device, dtype=B.dtype))
            set_trainable(A, new_a)
            set_trainable(B, new_b)
            params += [A, B]
        reset_moments(params, optimizer, self.spec.moments, keep=self.spec.prune_keep,
                      generator=torch.Generator().manual_seed(self.spec.seed * 31 + stage))
        record = {"stage": stage, "step": int(step), "reason": reason, "momentum": m,
                  "merged_norm": math.sqrt(merged_sq), "layers": len(self.factors)}
        self.stages.append(record)
        return record

    def update_factors(self, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{layer: (B_cat, A_cat)} with B_cat A_cat = W_now − W_0: the merged stages Σ_j B̃_j A_j and the live s·B A."""
        out = {}
        for name, layer in lora_layers(model):
            parts = [*self.factors.get(base_name(name), []), lora_factors(layer)]
            out[base_name(name)] = (torch.cat([b for b, _ in parts], 1), torch.cat([a for _, a in parts], 0))
        return out

    @contextmanager
    def base_model_context(self, model: nn.Module) -> Iterator[nn.Module]:
        """The base policy is W_0: disabling the live adapter is enough only before the first unload (afterwards W
        holds the merged stages, so this refuses rather than return W_0 + Σ stages as the "base")."""
        if self.stages:
            raise NotImplementedError(f"method={self.name} has merged {len(self.stages)} stage(s) into W; the base "
                                      "weights W_0 are not kept, so the base policy cannot be computed.")
        with super().base_model_context(model):
            yield model

    # ------------------------------------------------------------------------------------------------ persistence
    def stage_tensors(self) -> dict[str, torch.Tensor]:
        """The stage history as safetensors entries ``{layer}::stage{j}::B`` / ``::A``."""
        out = {}
        for key, parts in self.factors.items():
            for j, (b, a) in enumerate(parts, start=1):
                out[f"{key}::stage{j:04d}::B"] = b.contiguous()
                out[f"{key}::stage{j:04d}::A"] = a.contiguous()
        return out

    def write_stages(self, folder: Path) -> None:
        """``plora_stages.safetensors`` (factors + stage records as metadata), written atomically into ``folder``."""
        import os

        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{STAGES_FILE}.tmp"
        save_file(self.stage_tensors(), str(tmp), metadata={"stages": json.dumps(self.stages),
                                                            "spec": json.dumps(asdict(self.spec), default=str)})
        os.replace(tmp, folder / STAGES_FILE)

    @staticmethod
    def read_stages(folder: Path) -> tuple[list[dict[str, Any]], dict[str, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """The (stage records, factors) written by :meth:`write_stages`."""
        from safetensors import safe_open

        path = Path(folder) / STAGES_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the folder was not written by method=plora (or the save was "
                                    "cut short; resume from the previous checkpoint by deleting this one).")
        factors: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
        with safe_open(str(path), framework="pt") as f:
            stages = json.loads(f.metadata()["stages"])
            for k in f.keys():
                layer, stage, part = k.split("::")
                factors.setdefault(layer, {}).setdefault(int(stage.removeprefix("stage")), {})[part] = f.get_tensor(k)
        ordered = {layer: [(d[j]["B"], d[j]["A"]) for j in sorted(d)] for layer, d in factors.items()}
        return stages, ordered

    @torch.no_grad()
    def apply_stages(self, model: nn.Module, factors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]) -> int:
        """W ← W + Σ_j B̃_j A_j for every matrix of ``model`` (a plain model or a PEFT one) named in ``factors``.

        Collective under ZeRO-3. Returns the number of matrices changed; raises if a named layer is absent.
        """
        modules = {base_name(n): m for n, m in model.named_modules()}
        missing = [k for k in factors if k not in modules]
        if missing:
            raise ValueError(f"The PLoRA stages name layers absent from the model: {missing[:3]}; load them onto the "
                             "base model they were trained from.")
        for key, parts in factors.items():
            layer = modules[key]
            lin = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
            with editable([lin.weight]):
                dev = lin.weight.device
                delta = sum(b.to(dev, torch.float32) @ a.to(dev, torch.float32) for b, a in parts)
                if getattr(layer, "fan_in_fan_out", False):
                    delta = delta.mT
                lin.weight.copy_((lin.weight.float() + delta).to(lin.weight.dtype))
        return len(factors)

    def restore(self, model: nn.Module, folder: Path) -> None:
        """Resume: rebuild W_0 + Σ merged stages in ``model`` and the stage history from a checkpoint ``folder``."""
        stages, factors = self.read_stages(folder)
        self.apply_stages(model, factors)
        self.stages, self.factors = stages, factors

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        """The stage records (step, reason, merged ‖ΔW‖_F) of every unload so far."""
        return {"stages": self.stages}

    def save_extras(self, model: nn.Module, folder: Path) -> None:
        """Beside PEFT's adapter files (the last stage): the stage history and ``plora_config.json``."""
        self.write_stages(folder)
        cfg = {"method": self.name, **asdict(self.spec), "stages": self.stages,
               "base": "the PEFT adapter applies to W_0 + the stages in plora_stages.safetensors; "
                       "PeriodicLoRA.load_adapter rebuilds it"}
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, default=str) + "\n")

    def load_adapter(self, base_model: nn.Module, folder: str | Path, is_trainable: bool = False) -> nn.Module:
        """W_0 + Σ_j B̃_j A_j rebuilt in ``base_model``, then the last stage's PEFT adapter attached on top."""
        from peft import PeftModel

        stages, factors = self.read_stages(Path(folder))
        self.apply_stages(base_model, factors)
        self.stages, self.factors = stages, factors  # a later save of the loaded model keeps every stage
        return PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable)
