"""The method contract (PEFT's ``TEST_CASES`` style): one parametrised test over every registered method.

On a tiny in-file model: attach → a few Trainer steps change the output (and lower the loss) → save → load onto a
fresh base gives the same outputs → the merged export gives the same outputs → a second save / load round trip is
stable. A new method adds one row to ``CASES``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spectune.config import CONF_DIR
from spectune.methods import REGISTRY, build_method

TARGETS = ["q_proj", "v_proj"]
# One row per method: (name, spec keyword arguments). Dropout 0 so the train-mode loss is deterministic.
CASES = [
    ("full", {}),
    ("lora", dict(r=4, alpha=8, dropout=0.0, target_modules=TARGETS)),
    ("lora_dash", dict(r=4, alpha=8, dropout=0.0, target_modules=TARGETS, s=2, t=2, svd_cache=False)),
    ("plora", dict(r=4, alpha=8, dropout=0.0, target_modules=TARGETS, unload_every=2)),
    ("svf", dict(target_modules=TARGETS)),
]
STEPS = 6


class Tiny(nn.Module):
    """Two adapted projections and a head; ``forward(x, labels)`` returns the MSE loss as HF models do."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(16, 32)
        self.v_proj = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.head(torch.tanh(self.v_proj(torch.tanh(self.q_proj(x)))))
        loss = nn.functional.mse_loss(out, labels) if labels is not None else None
        return {"loss": loss, "logits": out}


def fresh_base() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 16, generator=g)
    return x, torch.randn(32, 4, generator=g)


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x=x)["logits"].detach().clone()


def train(method, model: nn.Module, tmp: Path) -> None:
    """STEPS optimizer steps with the HF Trainer and the method's callbacks, as the recipe runs them."""
    from transformers import Trainer, TrainingArguments

    x, y = data()
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = TrainingArguments(output_dir=str(tmp / "trainer"), per_device_train_batch_size=8, max_steps=STEPS,
                             learning_rate=2e-2, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                             report_to=[], use_cpu=True, disable_tqdm=True, seed=0, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=method.callbacks())
    trainer.train()


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[c[0] for c in CASES])
def test_method_contract(name: str, spec: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPECTUNE_CACHE", str(tmp_path / "cache"))
    x, y = data()
    before = outputs(fresh_base(), x)

    method = build_method(name, **spec)
    model = method.attach(fresh_base(), None)
    train(method, model, tmp_path)
    trained = outputs(model, x)
    assert (trained - before).abs().max() > 1e-3, "training did not change the output"
    loss_before, loss_after = (nn.functional.mse_loss(o, y).item() for o in (before, trained))
    assert loss_after < loss_before, f"training did not lower the loss on its data: {loss_before} -> {loss_after}"

    method.save(model, tmp_path / "saved")
    loaded = build_method(name, **spec).load_adapter(fresh_base(), tmp_path / "saved")
    torch.testing.assert_close(outputs(loaded, x), trained, atol=1e-5, rtol=1e-5)

    merged = method.merged(model)
    assert not any("lora" in n for n, _ in merged.named_parameters()), "the merged export still holds adapter weights"
    torch.testing.assert_close(outputs(merged, x), trained, atol=1e-5, rtol=1e-5)

    # The method object that loaded a run carries what the model alone does not (PLoRA's stage history).
    reloader = build_method(name, **spec)
    reloaded = reloader.load_adapter(fresh_base(), tmp_path / "saved")
    reloader.save(reloaded, tmp_path / "saved_again")
    second = build_method(name, **spec).load_adapter(fresh_base(), tmp_path / "saved_again")
    torch.testing.assert_close(outputs(second, x), trained, atol=1e-5, rtol=1e-5)


def test_every_registered_method_has_a_row_and_a_config() -> None:
    """The registry is the one list: the contract rows and the Hydra ``method/`` group match it exactly."""
    assert [c[0] for c in CASES] == list(REGISTRY)
    assert sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml")) == sorted(REGISTRY)


def test_unknown_method_and_option_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"Known methods: \['full', 'lora', 'lora_dash', 'plora'"):
        build_method("dora")
    with pytest.raises(ValueError, match=r"no option\(s\) \['rank'\].*conf/method/lora.yaml"):
        build_method("lora", rank=4)
