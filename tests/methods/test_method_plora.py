"""PeriodicLoRA on the embedded MiniLM: unload invariants against float64 references, accumulated rank, optimizer
state, LR restart, stage persistence and the saved-adapter round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectune.methods import build_method
from spectune.methods.lora import lora_layers
from spectune.methods.plora import PeriodicLoRA, PLoraSpec
from spectune.methods.plora_schedule import PLoRACallback, stage_length
from spectune.models import load_model_and_tokenizer
from spectune.spectral import rank_stats, rank_stats_lowrank

TARGETS = ["query", "value"]


def _model(method: PeriodicLoRA):
    model, tok = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    model = method.attach(model, "SEQ_CLS")
    model.eval()
    return model, tok


def _batch(tok):
    return tok(["a gripping, funny film", "dull and far too long", "not bad at all"], return_tensors="pt",
               padding=True)


def _randomise_adapter(model, seed: int) -> None:
    """Give every adapter a non-trivial state (B = 0 at init would make every test pass vacuously)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _snapshot(model) -> dict[str, dict[str, np.ndarray]]:
    """float64 copies of W, A, B and the scale of every adapted layer."""
    out = {}
    for name, layer in lora_layers(model):
        out[name] = {"W": layer.get_base_layer().weight.detach().double().numpy().copy(),
                     "A": layer.lora_A["default"].weight.detach().double().numpy().copy(),
                     "B": layer.lora_B["default"].weight.detach().double().numpy().copy(),
                     "s": float(layer.scaling["default"])}
    return out


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits.double()


@pytest.mark.parametrize("momentum,split", [(0.0, "sqrt"), (0.9, "sqrt"), (0.5, "sqrt")])
def test_plain_and_sqrt_momentum_unload_keep_the_function(momentum, split):
    method = PeriodicLoRA(PLoraSpec(r=2, target_modules=TARGETS, dropout=0.0, momentum=momentum,
                                    momentum_split=split))
    model, tok = _model(method)
    _randomise_adapter(model, 1)
    batch = _batch(tok)
    before, snap = _logits(model, batch), _snapshot(model)
    method.unload(model, step=10)
    after = _logits(model, batch)
    assert torch.allclose(before, after, atol=2e-5, rtol=1e-5), (before - after).abs().max()
    merged = 1.0 - momentum if momentum > 0 else 1.0  # m is the share kept in the adapter (the seed's m)
    for name, layer in lora_layers(model):
        ref = snap[name]
        expected_w = ref["W"] + merged * ref["s"] * (ref["B"] @ ref["A"])  # float64, from the pre-unload copies
        np.testing.assert_allclose(layer.get_base_layer().weight.detach().double().numpy(), expected_w, atol=1e-6)
        A = layer.lora_A["default"].weight.detach().double().numpy()
        B = layer.lora_B["default"].weight.detach().double().numpy()
        if momentum == 0.0:
            assert not B.any(), "plain unload: B must be zero"
            bound = 1.0 / math.sqrt(A.shape[1])  # kaiming_uniform(a=sqrt 5) = U(-1/sqrt(d_in), 1/sqrt(d_in))
            assert np.abs(A).max() <= bound and np.abs(A).max() > 0.5 * bound
            assert not np.allclose(A, ref["A"])
        else:
            c = math.sqrt(momentum)
            np.testing.assert_allclose(A, c * ref["A"], rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(B, c * ref["B"], rtol=1e-6, atol=1e-9)


def test_linear_momentum_split_changes_the_function():
    """The seed's linear form keeps m^2 sBA: the model changes (so the invariance test above can fail)."""
    method = PeriodicLoRA(PLoraSpec(r=2, target_modules=TARGETS, dropout=0.0, momentum=0.5, momentum_split="linear"))
    model, tok = _model(method)
    _randomise_adapter(model, 2)
    batch = _batch(tok)
    before = _logits(model, batch)
    method.unload(model, step=1)
    assert not torch.allclose(before, _logits(model, batch), atol=1e-4)


@pytest.mark.parametrize("split", ["linear", "sqrt"])
def test_momentum_is_the_share_kept_in_the_adapter_as_in_the_seed(split):
    """Seed (001): at an unload BA is scaled by (1 − m) into W and A, B by m, so m is what STAYS in the adapter.

    m = 0.9 is the first author's script's ``--plora_momentum_ratio 0.1`` (0.1 merged). The reference is written
    as a sum of rank-1 outer products in float64, independently of the code's ``b @ a``.
    """
    m = 0.9
    method = PeriodicLoRA(PLoraSpec(r=2, target_modules=TARGETS, dropout=0.0, momentum=m, momentum_split=split))
    model, tok = _model(method)
    _randomise_adapter(model, 7)
    batch = _batch(tok)
    before, snap = _logits(model, batch), _snapshot(model)
    method.unload(model, step=3)
    keep = {"linear": m, "sqrt": math.sqrt(m)}[split]  # the factor on A and on B
    for name, layer in lora_layers(model):
        ref = snap[name]
        ba = sum(np.outer(ref["B"][:, k], ref["A"][k, :]) for k in range(ref["A"].shape[0]))
        gained = layer.get_base_layer().weight.detach().double().numpy() - ref["W"]
        np.testing.assert_allclose(gained, 0.1 * ref["s"] * ba, atol=1e-6, err_msg=f"{name}: W must gain 0.1·sBA")
        np.testing.assert_allclose(layer.lora_A["default"].weight.detach().double().numpy(), keep * ref["A"],
                                   rtol=1e-6, atol=1e-9, err_msg=f"{name}: A must become {keep:.4f}·A")
        np.testing.assert_allclose(layer.lora_B["default"].weight.detach().double().numpy(), keep * ref["B"],
                                   rtol=1e-6, atol=1e-9, err_msg=f"{name}: B must become {keep:.4f}·B")
    if split == "sqrt":  # 0.1·sBA merged + 0.9·sBA kept: the model's function is unchanged
        after = _logits(model, batch)
        assert torch.allclose(before, after, atol=2e-5, rtol=1e-5), (before - after).abs().max()


def test_accumulated_update_exceeds_rank_r_and_matches_the_stage_factors():
    r, stages = 2, 4
    method = PeriodicLoRA(PLoraSpec(r=r, target_modules=TARGETS, dropout=0.0))
    model, _ = _model(method)
    w0 = {n: layer.get_base_layer().weight.detach().double().numpy().copy() for n, layer in lora_layers(model)}
    for k in range(stages):  # each stage "learns" a different direction
        _randomise_adapter(model, 100 + k)
        method.unload(model, step=k + 1)
    _randomise_adapter(model, 999)  # the live last stage
    factors = method.update_factors(model)
    assert len(method.stages) == stages
    for name, layer in lora_layers(model):
        dense = layer.get_base_layer().weight.detach().double().numpy() - w0[name]
        s = float(layer.scaling["default"])
        live_b = layer.lora_B["default"].weight.detach().double().numpy()
        dense = dense + s * (live_b @ layer.lora_A["default"].weight.detach().double().numpy())

        rank = np.linalg.matrix_rank(dense, tol=1e-5 * np.linalg.norm(dense, 2))
        assert rank == r * (stages + 1) > r
        B, A = factors[name.removeprefix("base_model.model.")]
        np.testing.assert_allclose(B.double().numpy() @ A.double().numpy(), dense, atol=2e-6)
        stats = rank_stats_lowrank(B, A)
        assert stats["numerical_rank"] == rank
        assert stats["stable_rank"] > 1.0 and stats["effective_rank"] > r


def test_lowrank_rank_stats_equal_the_dense_ones():
    g = torch.Generator().manual_seed(0)
    B, A = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(6, 30, generator=g, dtype=torch.float64)
    low, dense = rank_stats_lowrank(B, A), rank_stats(B @ A)
    sv = np.linalg.svd((B @ A).numpy(), compute_uv=False)  # independent reference
    np.testing.assert_allclose(low["singular_values"], sv, atol=1e-10)
    for key in ("numerical_rank", "stable_rank", "effective_rank", "frobenius_norm", "spectral_norm"):
        assert low[key] == pytest.approx(dense[key], rel=1e-9, abs=1e-9), key
    assert low["numerical_rank"] == 6 and low["shape"] == [40, 30]


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])  # train.optimizer: adamw_torch(_fused)
@pytest.mark.parametrize("mode", ["reset", "prune"])
def test_unload_resets_or_prunes_the_adapters_optimizer_state(mode, fused):
    method = PeriodicLoRA(PLoraSpec(r=4, target_modules=TARGETS, dropout=0.0, moments=mode, prune_keep=0.25))
    model, tok = _model(method)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=fused)
    batch = _batch(tok)
    for _ in range(2):
        model(**batch, labels=torch.tensor([1, 0, 1])).loss.backward()
        opt.step()
        opt.zero_grad()
    layer = lora_layers(model)[0][1]
    A = layer.lora_A["default"].weight
    head = next(p for n, p in model.named_parameters() if "classifier" in n and p.requires_grad)
    head_state = opt.state[head]["exp_avg"].clone()
    before = opt.state[A]["exp_avg_sq"].clone()
    method.unload(model, step=2, optimizer=opt)
    if mode == "reset":
        assert A not in opt.state  # the next step starts A's moments (and bias correction) from zero
    else:
        after = opt.state[A]["exp_avg_sq"]
        kept = (after != 0).float().mean().item()
        assert 0.1 < kept < 0.4  # prune_keep = 0.25
        nz = after != 0
        assert torch.equal(after[nz], before[nz])
    assert torch.equal(opt.state[head]["exp_avg"], head_state)  # not an adapter: untouched
    model(**batch, labels=torch.tensor([1, 0, 1])).loss.backward()  # and training goes on from there
    opt.step()
    assert torch.isfinite(opt.state[A]["exp_avg_sq"]).all() and float(opt.state[A]["step"]) >= 1


def test_restart_schedule_rewarms_from_each_boundary():
    from transformers import TrainerControl, TrainerState, TrainingArguments, get_linear_schedule_with_warmup

    method = PeriodicLoRA(PLoraSpec(r=2, target_modules=TARGETS, dropout=0.0, unload_every=5, schedule="restart",
                                    unload_at_epoch_end=False))
    model, _ = _model(method)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=4, num_training_steps=100)
    ref = [min(k / 4, (100 - k) / 96) for k in range(100)]  # the un-restarted schedule, written out
    cb = PLoRACallback(method)
    args = TrainingArguments(output_dir="/tmp/unused", per_device_train_batch_size=1, report_to=[], use_cpu=True)
    state, control = TrainerState(max_steps=100), TrainerControl()
    cb.on_train_begin(args, state, control, model=model, lr_scheduler=sched)
    lrs = {}
    for g in range(1, 13):
        opt.step()
        sched.step()
        state.global_step = g
        cb.on_step_end(args, state, control, model=model, optimizer=opt, lr_scheduler=sched)
        lrs[g] = opt.param_groups[0]["lr"]
    assert [s["step"] for s in method.stages] == [5, 10]
    assert lrs[4] == pytest.approx(ref[4]) and lrs[5] == pytest.approx(ref[0])  # re-warm starts at boundary 5
    assert lrs[7] == pytest.approx(ref[2]) and lrs[10] == pytest.approx(ref[0]) and lrs[12] == pytest.approx(ref[2])


def test_stage_length_in_examples_needs_a_whole_number_of_steps():
    spec = PLoraSpec(unload_every=None, unload_every_examples=4800)
    assert stage_length(spec, per_device_batch=4, grad_accum=3, world_size=2) == 200  # the paper: batch 24
    with pytest.raises(ValueError, match="not a multiple of the global batch"):
        stage_length(spec, per_device_batch=7, grad_accum=1, world_size=1)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"unload_every": 10, "unload_every_examples": 100}, "once"),
    ({"momentum": 1.0}, "merges nothing"),
    ({"momentum_split": "cubic"}, "momentum_split"),
    ({"moments": "keep"}, "moments"),
    ({"schedule": "cosine"}, "schedule"),
])
def test_bad_options_name_the_fix(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_method("plora", **kwargs)


def test_saved_adapter_rebuilds_the_partially_merged_base(tmp_path):
    """save (PEFT files + stages) → load onto a fresh W_0 → same logits; and equal to the merged export."""
    method = PeriodicLoRA(PLoraSpec(r=2, target_modules=TARGETS, dropout=0.0))
    model, tok = _model(method)
    for k in range(3):
        _randomise_adapter(model, 10 + k)
        method.unload(model, step=k + 1)
    _randomise_adapter(model, 50)
    batch = _batch(tok)
    trained = _logits(model, batch)
    model.save_pretrained(str(tmp_path))
    method.save_extras(model, tmp_path)
    base, _ = load_model_and_tokenizer("minilm", "sequence_classification", num_labels=2)
    head = {k: v for k, v in model.state_dict().items() if "classifier" in k and "modules_to_save" in k}
    assert head  # PEFT trains and saves the classifier head for SEQ_CLS
    loaded = PeriodicLoRA(PLoraSpec(r=2, target_modules=TARGETS)).load_adapter(base, tmp_path).eval()
    assert torch.allclose(_logits(loaded, batch), trained, atol=1e-5)
    merged = method.merged(model).eval()
    assert torch.allclose(_logits(merged, batch), trained, atol=1e-5)
    stages, factors = PeriodicLoRA.read_stages(tmp_path)
    assert [s["stage"] for s in stages] == [1, 2, 3] and all(len(v) == 3 for v in factors.values())


@pytest.mark.parametrize("device", [None, "cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_a_init_is_the_cpu_draw_mapped_to_the_bound_on_any_device(device):
    from spectune.methods.plora import kaiming_uniform_a_sqrt5

    shape = (4, 96)
    a = kaiming_uniform_a_sqrt5(shape, torch.Generator().manual_seed(7), device=device).cpu()
    # reference: the same CPU stream in float64, mapped to U(-1/sqrt(d_in), 1/sqrt(d_in)) written differently
    u = torch.rand(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float32).double().numpy()
    ref = (2 * u - 1) / np.sqrt(shape[1])
    assert a.dtype == torch.float32 and np.allclose(a.numpy(), ref, rtol=0, atol=1e-7)
    # bit-identical to the plain CPU path, wherever the mapping ran
    plain = kaiming_uniform_a_sqrt5(shape, torch.Generator().manual_seed(7))
    assert torch.equal(a, plain)
