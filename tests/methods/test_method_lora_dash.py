"""LoRA-Dash on PEFT LoRA: pre-launch = plain LoRA, one-time selection of S, the dash forward, merge, save/reload,
gradients and the switch schedule; each quantity checked against an independent float64/numpy computation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spectune.methods.lora import LoRA, LoraSpec
from spectune.methods.lora_dash import CALLS, DELTA, INDEX, SWITCHED, U_S, V_S, LoRADash, LoraDashSpec, dash_layers
from spectune.methods.lora_dash_schedule import DashSwitchCallback
from spectune.spectral import SVDCache

pytestmark = pytest.mark.usefixtures("single_thread")


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def spec(**kw) -> LoraDashSpec:
    base = dict(r=4, alpha=8, dropout=0.0, target_modules=["fc1", "fc2"], s=3, t=2, svd_cache=False)
    return LoraDashSpec(**{**base, **kw})


def mlp_dash(init_seed: int = 0, **kw) -> tuple[LoRADash, nn.Module]:
    torch.manual_seed(init_seed)
    method = LoRADash(spec(**kw))
    return method, method.attach(MLP(), None)


def tiny_llama(seed: int = 0) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def randomise_b(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "lora_B") and isinstance(m.lora_B, nn.ModuleDict):
                w = m.lora_B["default"].weight
                w.copy_(torch.randn(w.shape, generator=g) * 0.5)


def randomise_delta(model: nn.Module, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in dash_layers(model):
            d = getattr(layer, DELTA)["default"]
            d.copy_(torch.randn(d.shape, generator=g))


def np_rates(layer: nn.Module, tol: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Independent float64: U, σ, Vᵀ of W and rate_i = |u_iᵀ (sBA) v_i| / σ_i; -inf (never chosen) where σ_i <= tol,
    tol None meaning the project's rule max(d_out, d_in)·eps_fp32·σ_1 (an fp32 SVD cannot resolve smaller σ)."""
    W = layer.base_layer.weight.detach().double().numpy()
    B = layer.lora_B["default"].weight.detach().double().numpy()
    A = layer.lora_A["default"].weight.detach().double().numpy()
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    dW = layer.scaling["default"] * B @ A
    rates = np.abs(np.einsum("ji,jk,ik->i", U, dW, Vt)) / S
    tol = max(W.shape) * np.finfo(np.float32).eps * S[0] if tol is None else tol
    return U, S, Vt, np.where(S > tol, rates, -np.inf)


def np_top(rates: np.ndarray, s: int) -> list[int]:
    return [int(i) for i in np.argsort(-rates, kind="stable")[:s]]


# ------------------------------------------------------------------------------------------------------ spec


def test_spec_rejects_bad_values_naming_the_fix() -> None:
    with pytest.raises(ValueError, match="method.s"):
        spec(s=0)
    with pytest.raises(ValueError, match="method.select"):
        spec(select="largest")
    with pytest.raises(ValueError, match="method.count"):
        spec(count="epochs")
    with pytest.raises(ValueError, match="method.t"):
        spec(t=-1)
    with pytest.raises(ValueError, match="method.t >= 1"):
        spec(t=0, select="rate")
    spec(t=0, select="random")  # fine: no rates needed
    with pytest.raises(ValueError, match=r"method.s <= 10"):
        LoRADash(spec(s=11)).attach(MLP(), None)  # fc2 has min(d_out, d_in) = 10


# ------------------------------------------------------------------------------------------------------ pre-launch


def test_before_switch_model_is_plain_peft_lora_exactly() -> None:
    torch.manual_seed(0)
    dash = LoRADash(LoraDashSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], s=3, t=5,
                                 svd_cache=False))
    dash_model = dash.attach(tiny_llama(0), "CAUSAL_LM")
    torch.manual_seed(0)
    lora_model = LoRA(LoraSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])).attach(
        tiny_llama(0), "CAUSAL_LM")
    # Same seed → same A; give both the same nonzero B so LoRA's term is live.
    randomise_b(dash_model)
    randomise_b(lora_model)
    layers = dash_layers(dash_model)
    assert len(layers) == 4
    for _, layer in layers:
        d = getattr(layer, DELTA)["default"]
        assert d.requires_grad and d.shape == (3,) and torch.count_nonzero(d) == 0
        assert torch.count_nonzero(getattr(layer, U_S)["default"]) == 0
        assert torch.count_nonzero(getattr(layer, V_S)["default"]) == 0
        assert int(getattr(layer, SWITCHED)["default"]) == 0
        assert getattr(layer, INDEX)["default"].tolist() == [-1, -1, -1]
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(3))
    ref = lora_model(input_ids=ids).logits
    assert torch.equal(dash_model(input_ids=ids).logits, ref)
    randomise_delta(dash_model)  # δ is inert until the switch
    assert torch.equal(dash_model(input_ids=ids).logits, ref)
    n_dash = sum(p.numel() for p in dash_model.parameters() if p.requires_grad)
    n_lora = sum(p.numel() for p in lora_model.parameters() if p.requires_grad)
    assert n_dash == n_lora + 4 * 3


# ------------------------------------------------------------------------------------------------------ switch


def test_selection_and_forward_match_independent_float64() -> None:
    method, model = mlp_dash(s=3)
    randomise_b(model)
    expected = {name.removeprefix("base_model.model."): np_rates(layer) for name, layer in dash_layers(model)}
    records = method.switch(model)
    randomise_delta(model)
    model.eval()
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(4))
    h = x.double().numpy()
    for name in ("fc1", "fc2"):
        layer = dict(model.named_modules())[f"base_model.model.{name}"]
        U, S, Vt, rates = expected[name]
        idx = np_top(rates, 3)
        assert records[name]["indices"] == idx
        np.testing.assert_allclose(records[name]["sigma"], S[idx], rtol=1e-5)
        np.testing.assert_allclose(records[name]["rate"], rates[idx], rtol=1e-4)
        W = layer.base_layer.weight.detach().double().numpy()
        b = layer.base_layer.bias.detach().double().numpy()
        B = layer.lora_B["default"].weight.detach().double().numpy()
        A = layer.lora_A["default"].weight.detach().double().numpy()
        delta = getattr(layer, DELTA)["default"].detach().double().numpy()
        dash = U[:, idx] @ np.diag(delta) @ Vt[idx, :]
        h = h @ (W + layer.scaling["default"] * B @ A + dash).T + b
        if name == "fc1":
            h = np.tanh(h)
    np.testing.assert_allclose(model(x).detach().double().numpy(), h, atol=1e-5)


def test_switch_fires_once_and_never_recomputes() -> None:
    method, model = mlp_dash(s=3)
    randomise_b(model, seed=1)
    first = method.switch(model)
    bufs = {n: (getattr(l_, U_S)["default"].clone(), getattr(l_, V_S)["default"].clone()) for n, l_ in
            dash_layers(model)}
    randomise_b(model, seed=7)  # a different sBA would pick other directions
    moved = {n.removeprefix("base_model.model."): np_top(np_rates(l_)[3], 3) for n, l_ in dash_layers(model)}
    assert any(moved[k] != first[k]["indices"] for k in first)
    assert method.switch(model) == {}
    for name, layer in dash_layers(model):
        assert method.switch_layer(name, layer) is None
        assert torch.equal(getattr(layer, U_S)["default"], bufs[name][0])
        assert torch.equal(getattr(layer, V_S)["default"], bufs[name][1])
    assert {k: v["indices"] for k, v in method.records.items()} == {k: v["indices"] for k, v in first.items()}


@pytest.mark.parametrize("mode", ["top_sigma", "bottom_sigma", "random"])
def test_select_modes_pick_the_right_directions(mode: str) -> None:
    method, model = mlp_dash(s=4, select=mode, seed=5)
    randomise_b(model)
    records = method.switch(model)
    for name, layer in dash_layers(model):
        U, S, Vt, _ = np_rates(layer)
        k = len(S)
        idx = records[name.removeprefix("base_model.model.")]["indices"]
        if mode == "top_sigma":
            assert idx == [0, 1, 2, 3]
        elif mode == "bottom_sigma":
            assert idx == list(range(k - 4, k))
        else:
            assert len(set(idx)) == 4 and all(0 <= i < k for i in idx)
        # U_S, V_S hold exactly those singular vectors (up to a common sign per direction).
        u = getattr(layer, U_S)["default"].double().numpy()
        v = getattr(layer, V_S)["default"].double().numpy()
        sign = np.sign(np.sum(u * U[:, idx], axis=0))
        np.testing.assert_allclose(u, U[:, idx] * sign, atol=1e-5)
        np.testing.assert_allclose(v, Vt[idx, :].T * sign, atol=1e-5)
    if mode == "random":  # reproducible per seed, different across seeds and layers
        again = mlp_dash(s=4, select=mode, seed=5)
        randomise_b(again[1])
        assert again[0].switch(again[1]) == records
        other = mlp_dash(s=4, select=mode, seed=6)
        assert {k: v["indices"] for k, v in other[0].switch(other[1]).items()} != \
            {k: v["indices"] for k, v in records.items()}
        assert records["fc1"]["indices"] != records["fc2"]["indices"]


def test_rate_switch_refuses_when_sba_is_still_zero() -> None:
    """B = 0 at the switch: every rate |u_iᵀ(sBA)v_i|/σ_i is 0 and a tie-break would pick the top-σ directions.

    select=rate must refuse and name the cause (warm-up at lr 0) and the fix; the σ-based ablations need no rates.
    """
    method, model = mlp_dash(s=3)  # B as PEFT initialises it: zero
    assert all(not layer.lora_B["default"].weight.any() for _, layer in dash_layers(model))
    with pytest.raises(RuntimeError, match=r"(?s)change rate.*is 0.*warm.*method\.t"):
        method.switch(model)
    assert all(not layer._lora_dash_on for _, layer in dash_layers(model)) and method.records == {}
    for mode in ("top_sigma", "bottom_sigma", "random"):
        other, m2 = mlp_dash(s=3, select=mode)
        assert set(other.switch(m2)) == {"fc1", "fc2"}


def test_trainer_with_warmup_at_t_1_refuses_instead_of_choosing_by_sigma(tmp_path: Path) -> None:
    """A linear warm-up makes optimizer step 1 run at lr 0, so B is still zero at t = 1 (the defect of issue 7)."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    method = LoRADash(LoraDashSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], s=2, t=1,
                                   svd_cache=False))
    model = method.attach(tiny_llama(0), "CAUSAL_LM")
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": (ids := torch.randint(0, 64, (8,), generator=g)), "labels": ids} for _ in range(4)]
    args = TrainingArguments(output_dir=str(tmp_path / "ckpt"), per_device_train_batch_size=2, max_steps=2,
                             learning_rate=1e-2, warmup_steps=2, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=method.callbacks())
    with pytest.raises(RuntimeError, match=r"(?s)warmup_steps.*lr 0"):
        trainer.train()
    assert all(not layer.lora_B["default"].weight.any() for _, layer in dash_layers(model))  # step 1 ran at lr 0


# ------------------------------------------------------------------------------------------------------ merge, save


def switched_llama(tmp: Path | None = None) -> tuple[LoRADash, nn.Module]:
    torch.manual_seed(0)
    method = LoRADash(LoraDashSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                                   s=3, t=1, svd_cache=False))
    model = method.attach(tiny_llama(0), "CAUSAL_LM")
    randomise_b(model)
    method.switch(model)
    randomise_delta(model)
    return method, model.eval()


IDS = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(11))


def test_merged_equals_unmerged_and_loads_in_plain_transformers(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    method, model = switched_llama()
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
        merged = method.merged(model)
        assert not any("lora" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(input_ids=IDS).logits, ref, atol=1e-5, rtol=0)
        without_dash = copy.deepcopy(model).merge_and_unload()  # PEFT alone drops the dash term
        assert (without_dash(input_ids=IDS).logits - ref).abs().max() > 1e-3
        merged.save_pretrained(str(tmp_path / "merged"))
        plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
        torch.testing.assert_close(plain(input_ids=IDS).logits, ref, atol=1e-5, rtol=0)
    # The trained model is untouched by merged().
    assert torch.equal(model(input_ids=IDS).logits, ref)


@pytest.mark.parametrize("how", ["save_adapter", "trainer_save_model"])
def test_save_then_reload_restores_the_dash_term_exactly(tmp_path: Path, how: str) -> None:
    method, model = switched_llama()
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
    folder = tmp_path / "adapter"
    if how == "save_adapter":
        method.save_adapter(model, folder)
        assert (folder / "dash_state.safetensors").exists()
        saved = json.loads((folder / "dash_config.json").read_text())
        assert saved["s"] == 3 and saved["t"] == 1 and saved["select"] == "rate" and saved["count"] == "optimizer_steps"
        assert saved["selected"] == {k: v["indices"] for k, v in method.records.items()}
    else:  # what the recipe's trainer.save_model does for a PeftModel: PEFT's files only
        model.save_pretrained(str(folder))
    assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
    fresh = LoRADash(LoraDashSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                                  s=3, t=1, svd_cache=False))
    loaded = fresh.load_adapter(tiny_llama(0), folder)
    with torch.no_grad():  # PEFT's layers + the dash hook against the fused layers' one rank-(r+s) GEMM: float32
        # rounding apart (the tensors themselves are compared exactly below)
        torch.testing.assert_close(loaded(input_ids=IDS).logits, ref, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(fresh.merged(loaded)(input_ids=IDS).logits, ref, atol=1e-5, rtol=0)
    src = {n: layer for n, layer in dash_layers(model)}
    for name, layer in dash_layers(loaded):
        for key in (DELTA, U_S, V_S, SWITCHED):
            assert torch.equal(getattr(layer, key)["default"], getattr(src[name], key)["default"])
        assert not getattr(layer, DELTA)["default"].requires_grad


def test_peft_load_adapter_into_attached_model_restores_state_as_trainer_resume_does(tmp_path: Path) -> None:
    method, model = switched_llama()
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
    model.save_pretrained(str(tmp_path / "ckpt"))
    torch.manual_seed(0)
    again = LoRADash(LoraDashSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                                  s=3, t=1, svd_cache=False))
    resumed = again.attach(tiny_llama(0), "CAUSAL_LM")
    resumed.load_adapter(str(tmp_path / "ckpt"), "default", is_trainable=True)  # Trainer._load_from_checkpoint
    assert all(layer._lora_dash_on == {"default"} for _, layer in dash_layers(resumed))
    assert again.switch(resumed) == {}  # switched state came back: no second selection
    assert LoRADash.selected(resumed) == {k: v["indices"] for k, v in method.records.items()}
    with torch.no_grad():
        assert torch.equal(resumed.eval()(input_ids=IDS).logits, ref)


# ------------------------------------------------------------------------------------------------------ training


def test_delta_gets_gradients_only_after_the_switch_and_an_optimizer_step_moves_it() -> None:
    method, model = mlp_dash(s=3)
    randomise_b(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randn(8, 12), torch.randn(8, 10)
    nn.functional.mse_loss(model(x), y).backward()
    deltas = [getattr(layer, DELTA)["default"] for _, layer in dash_layers(model)]
    assert all(d.grad is None for d in deltas)  # pre-launch: δ not in the graph
    opt.zero_grad()
    method.switch(model)
    nn.functional.mse_loss(model(x), y).backward()
    assert all(d.grad is not None and d.grad.abs().sum() > 0 for d in deltas)
    for _, layer in dash_layers(model):
        assert layer.lora_A["default"].weight.grad.abs().sum() > 0  # A, B keep training
        assert layer.lora_B["default"].weight.grad.abs().sum() > 0
        assert getattr(layer, U_S)["default"].grad is None  # buffers, frozen
    before = [d.detach().clone() for d in deltas]
    opt.step()
    assert all(not torch.equal(b, d) for b, d in zip(before, deltas, strict=True))


def test_dash_term_goes_through_peft_dropout() -> None:
    method, model = mlp_dash(dropout=1.0)  # p = 1 drops every input of the LoRA and the dash terms
    randomise_b(model)
    method.switch(model)
    randomise_delta(model)
    x = torch.randn(4, 12)
    model.train()
    with model.disable_adapter():
        base = model(x)
    assert torch.equal(model(x), base)
    model.eval()
    assert not torch.allclose(model(x), base)


def _fake_trainer_state(step: int):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    state = TrainerState()
    state.global_step = step
    return TrainingArguments(output_dir="/tmp/unused", report_to=[], use_cpu=True), state, TrainerControl()


def test_callback_switches_exactly_at_optimizer_step_t() -> None:
    method, model = mlp_dash(s=3, t=3)
    calls: list[tuple[dict, int]] = []
    cb = DashSwitchCallback(method, on_switch=lambda rec, step: calls.append((rec, step)))
    args, state, control = _fake_trainer_state(0)
    cb.on_train_begin(args, state, control, model=model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    g = torch.Generator().manual_seed(0)
    expected = None
    for step in range(1, 7):
        x, y = torch.randn(8, 12, generator=g), torch.randn(8, 10, generator=g)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        if step == 3:  # the state the switch must see: after the t-th optimizer step
            expected = {n.removeprefix("base_model.model."): np_top(np_rates(l_)[3], 3) for n, l_ in
                        dash_layers(model)}
        state.global_step = step
        cb.on_step_end(args, state, control, model=model)
        on = all(layer._lora_dash_on for _, layer in dash_layers(model))
        assert on == (step >= 3), step
    assert len(calls) == 1 and calls[0][1] == 3
    assert {k: v["indices"] for k, v in calls[0][0].items()} == expected
    assert cb.history[0]["step"] == 3


def test_forward_call_counter_switches_each_layer_after_its_t_th_call() -> None:
    method, model = mlp_dash(s=3, t=3, count="forward_calls")
    randomise_b(model)
    cb = DashSwitchCallback(method)
    args, state, control = _fake_trainer_state(0)
    cb.on_train_begin(args, state, control, model=model)  # idempotent: hooks already installed by attach
    x = torch.randn(2, 12)
    for call in range(1, 4):
        model(x)
        assert all(not layer._lora_dash_on for _, layer in dash_layers(model)), call
        assert all(int(getattr(layer, CALLS)["default"]) == call for _, layer in dash_layers(model))
    expected = {n.removeprefix("base_model.model."): np_top(np_rates(l_)[3], 3) for n, l_ in dash_layers(model)}
    model(x)  # call t+1: switch first
    assert all(layer._lora_dash_on == {"default"} for _, layer in dash_layers(model))
    assert {k: v["indices"] for k, v in method.records.items()} == expected
    assert all(v["calls"] == 3 for v in method.records.values())
    state.global_step = 1
    cb.on_step_end(args, state, control, model=model)
    assert cb.history == [{"step": 1, "layers": method.records}]
    cb.on_step_end(args, state, control, model=model)
    assert len(cb.history) == 1


# ------------------------------------------------------------------------------------------------------ real model


def test_embedded_smollm2_one_layer(tmp_path: Path) -> None:
    from spectune.models import load_model_and_tokenizer

    base, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=1)
    cache = SVDCache(tmp_path / "svd")
    torch.manual_seed(0)
    method = LoRADash(LoraDashSpec(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"], s=8, t=1),
                      svd_cache=cache)
    model = method.attach(base, "CAUSAL_LM").eval()
    randomise_b(model)
    for _, layer in dash_layers(model):  # smaller B: a realistic early-training update
        layer.lora_B["default"].weight.data.mul_(0.01)
    expected = {n.removeprefix("base_model.model."): np_top(np_rates(l_)[3], 8) for n, l_ in dash_layers(model)}
    q_proj = dict(model.named_modules())["base_model.model.model.layers.0.self_attn.q_proj"]
    official = np_top(np_rates(q_proj, tol=0.0)[3], 8)
    records = method.switch(model)
    assert cache.misses == 2 and {k: v["indices"] for k, v in records.items()} == expected
    # This q_proj has σ_575 ≈ 0.0016 < tol ≈ 0.0057 (σ_1 ≈ 82): without a tolerance (official code, rate_tol=0)
    # the near-null directions win; the default leaves them out.
    assert 575 in official and 575 not in records["model.layers.0.self_attn.q_proj"]["indices"]
    loose = LoRADash(LoraDashSpec(r=8, alpha=16, target_modules=["q_proj"], s=8, t=1, rate_tol=0.0))
    w = q_proj.base_layer.weight
    idx, _ = loose.select("q", w, q_proj.lora_B["default"].weight, q_proj.lora_A["default"].weight,
                          q_proj.scaling["default"], cache.get("x", "q", w))
    assert idx.tolist() == official
    randomise_delta(model)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        torch.testing.assert_close(method.merged(model)(input_ids=ids).logits, ref, atol=1e-4, rtol=1e-5)
    # A second run on the same weights reads the SVDs from the cache.
    again = LoRADash(LoraDashSpec(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"], s=8, t=1),
                     svd_cache=cache)
    again_model = again.attach(copy.deepcopy(model).unload(), "CAUSAL_LM")  # unload: the original W back
    randomise_b(again_model)  # a fresh B = 0 would be refused by select=rate (all change rates 0)
    again.switch(again_model)
    assert cache.hits == 2


def test_hf_trainer_switches_at_step_t_and_save_model_reloads(tmp_path: Path) -> None:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    method = LoRADash(LoraDashSpec(r=4, alpha=8, dropout=0.05, target_modules=["q_proj", "v_proj"], s=2, t=2,
                                   svd_cache=False))
    model = method.attach(tiny_llama(0), "CAUSAL_LM")
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": (ids := torch.randint(0, 64, (8,), generator=g)), "labels": ids} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path / "ckpt"), per_device_train_batch_size=2, max_steps=4,
                             learning_rate=1e-2, save_strategy="no", report_to=[], use_cpu=True, logging_steps=1,
                             disable_tqdm=True, dataloader_num_workers=0)
    seen: list[int] = []
    [cb] = method.callbacks()
    cb.on_switch = lambda records, step: seen.append(step)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    trainer.train()
    assert seen == [2] and set(method.records) == {f"model.layers.{i}.self_attn.{p}" for i in (0, 1)
                                                   for p in ("q_proj", "v_proj")}
    deltas = [getattr(layer, DELTA)["default"] for _, layer in dash_layers(model)]
    assert all(torch.count_nonzero(d) > 0 for d in deltas)  # trained for steps 3-4
    trainer.save_model(str(tmp_path / "adapter"))
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
        loaded = LoRADash(method.spec).load_adapter(tiny_llama(0), tmp_path / "adapter")
        # PEFT's layers + the dash hook against the fused layers: float32 rounding apart
        torch.testing.assert_close(loaded(input_ids=IDS).logits, ref, atol=1e-6, rtol=1e-6)
