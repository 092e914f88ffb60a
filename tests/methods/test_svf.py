"""SVF (Transformer²): the factored layer against the dense formula W' = U diag(σ ⊙ z) Vᵀ, both forms (paper,
official), experts (save → load → merge, refusal of another base, cross-model transfer), mixtures, the HF Trainer.

Real-model checks use SmolLM2 cut to 2 blocks; Trainer checks use a tiny random LLaMA (a real PreTrainedModel).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from spectune.methods import build_method
from spectune.methods.svf import EXPERT_FILE, SVF, SvfSpec, read_expert, sample_indices, svf_layers
from spectune.methods.svf_layer import S_BUF, U_BUF, VH_BUF, SVFLinear, Z, svf_matmul
from spectune.spectral import SVDCache, svd

MLP = ["gate_proj", "up_proj", "down_proj"]


# --------------------------------------------------------------------------------------------------- helpers
def layer_from(weight: torch.Tensor, bias: torch.Tensor | None, z: torch.Tensor, **kw) -> SVFLinear:
    f = svd(weight, dtype=weight.dtype)
    return SVFLinear(f.U, f.S, f.Vh, bias, z, **kw)


def official_dense(U, S, Vh, p, max_mult=1.0):
    """The official compose_new_params (utils.py), written out: U diag(S ⊙ m) Vᵀ · ΣS / Σ(S ⊙ m), m = sigmoid(p)·mm."""
    m = torch.sigmoid(p) * max_mult
    return (U @ torch.diag(S * m) @ Vh) * (S.sum() / (S * m).sum())


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=64)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def smollm2():
    """A loader of SmolLM2 cut to 2 blocks (a fresh copy per call) and its tokenizer's batch."""
    from spectune.models import load_model_and_tokenizer

    base, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=2)
    base.eval()
    batch = tok(["Natalia sold clips to 48 of her friends in April.", "The answer is 72."], return_tensors="pt",
                padding=True)

    def load():
        return copy.deepcopy(base)

    return load, batch


@torch.no_grad()
def logits(model: nn.Module, batch) -> torch.Tensor:
    model.eval()
    return model(**batch).logits.detach().clone()


@pytest.fixture(scope="module")
def svd_root(tmp_path_factory) -> Path:
    """One SVD cache for the module: each SmolLM2 matrix is decomposed once."""
    return tmp_path_factory.mktemp("svd")


def svf(root: Path, **spec) -> SVF:
    return SVF(SvfSpec(**spec), svd_cache=SVDCache(root))


# --------------------------------------------------------------------------------------------------- the layer
def test_factored_forward_and_gradients_match_the_dense_formula_in_float64() -> None:
    g = torch.Generator().manual_seed(0)
    for d_out, d_in in [(7, 5), (5, 9), (6, 6)]:
        W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
        b = torch.randn(d_out, generator=g, dtype=torch.float64)
        f = svd(W, dtype=torch.float64)
        z0 = 1 + 0.3 * torch.randn(min(d_out, d_in), generator=g, dtype=torch.float64)
        x0 = torch.randn(3, 4, d_in, generator=g, dtype=torch.float64)
        gy = torch.randn(3, 4, d_out, generator=g, dtype=torch.float64)

        layer = SVFLinear(f.U, f.S, f.Vh, b, z0)
        layer.double()
        x = x0.clone().requires_grad_(True)
        y = layer(x)
        y.backward(gy)
        dz, dx = getattr(layer, Z).grad.clone(), x.grad.clone()

        z = getattr(layer, Z).detach().clone().requires_grad_(True)  # z0 as stored (the parameter is fp32 first)
        xd = x0.clone().requires_grad_(True)
        yd = xd @ (f.U @ torch.diag(f.S * z) @ f.Vh).mT + b
        yd.backward(gy)
        err = max((y - yd).abs().max(), (dx - xd.grad).abs().max(), (dz - z.grad).abs().max()).item()
        assert err < 1e-12, f"factored vs dense, float64: max |diff| = {err:.2e} ({d_out}x{d_in})"
        # dz = σ ⊙ Σ_batch (Uᵀg ⊙ Vᵀx), the closed form the backward implements
        gh, h = gy.reshape(-1, d_out) @ f.U, x0.reshape(-1, d_in) @ f.Vh.mT
        torch.testing.assert_close(dz, f.S * (gh * h).sum(0), rtol=1e-12, atol=1e-12)


def test_gradcheck_of_the_autograd_function_and_of_both_forms() -> None:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(6, 4, generator=g, dtype=torch.float64)
    f = svd(W, dtype=torch.float64)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.rand(4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s: svf_matmul(x, f.U, s, f.Vh), (x, s))
    for mapping, rescale in [("identity", False), ("sigmoid", True)]:
        layer = SVFLinear(f.U, f.S, f.Vh, torch.randn(6, generator=g, dtype=torch.float64), torch.zeros(4),
                          mapping=mapping, rescale=rescale, max_mult=2.0).double()
        p = (0.1 + 0.3 * torch.randn(4, generator=g, dtype=torch.float64)).requires_grad_(True)
        # The layer's own code path (scale() → SVFMatmul) with z substituted as a differentiable input.
        assert torch.autograd.gradcheck(lambda x, p, layer=layer: torch.func.functional_call(layer, {Z: p}, (x,)),
                                        (x, p))


def test_bf16_layer_and_autocast_follow_the_fp32_result() -> None:
    g = torch.Generator().manual_seed(2)
    W = torch.randn(48, 32, generator=g) / 6
    z = 1 + 0.1 * torch.randn(32, generator=g)
    ref = layer_from(W, None, z)
    x = torch.randn(4, 8, 32, generator=g)
    gy = torch.randn(4, 8, 48, generator=g)
    x32 = x.clone().requires_grad_(True)
    ref(x32).backward(gy)

    # Pure bf16 (a model loaded in bf16, or DeepSpeed's bf16 module): buffers and activations in bf16, z fp32.
    half = layer_from(W, None, z).to(torch.bfloat16)
    getattr(half, Z).data = getattr(half, Z).data.float()
    xb = x.to(torch.bfloat16).requires_grad_(True)
    yb = half(xb)
    yb.backward(gy.to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and getattr(half, Z).grad.dtype == torch.float32
    # Autocast over an fp32 layer (HF Trainer bf16=True): computed in bf16 as nn.Linear would be.
    auto = layer_from(W, None, z)
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = auto(xa)
    ya.float().backward(gy)
    assert ya.dtype == torch.bfloat16 and xa.grad.dtype == torch.float32
    y32 = ref(x)
    for y, dx, dz in [(yb, xb.grad, getattr(half, Z).grad), (ya, xa.grad, getattr(auto, Z).grad)]:
        for got, want in [(y, y32), (dx, x32.grad), (dz, getattr(ref, Z).grad)]:
            rel = ((got.float() - want).norm() / want.norm()).item()
            assert rel < 2e-2, f"bf16 relative error {rel:.3g}"


def test_official_form_follows_the_official_formula_and_init() -> None:
    g = torch.Generator().manual_seed(3)
    W = torch.randn(40, 24, generator=g, dtype=torch.float64)
    f = svd(W, dtype=torch.float64)
    spec = SvfSpec(form="official", max_mult=2.0)
    assert spec.initial() == (0.1, 0.01) and spec.layout() == ("sigmoid", True)
    p = 0.1 + 0.01 * torch.randn(24, generator=g, dtype=torch.float64)
    layer = SVFLinear(f.U, f.S, f.Vh, None, p, mapping="sigmoid", rescale=True, max_mult=2.0).double()
    want = official_dense(f.U, f.S, f.Vh, getattr(layer, Z).detach(), max_mult=2.0)
    torch.testing.assert_close(layer.dense_weight(torch.float64), want, rtol=1e-12, atol=1e-12)
    x = torch.randn(5, 24, generator=g, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ want.mT, rtol=1e-12, atol=1e-12)
    assert layer.scale().sum().item() == pytest.approx(f.S.sum().item(), rel=1e-12)  # Σ s = Σ σ at any z
    # A constant z is the base weight exactly (the rescale undoes it): W' = W at a noise-free start.
    layer2 = SVFLinear(f.U, f.S, f.Vh, None, torch.full((24,), 0.1), mapping="sigmoid", rescale=True).double()
    torch.testing.assert_close(layer2.dense_weight(torch.float64), W, rtol=1e-10, atol=1e-10)


def test_z_equal_one_gives_the_base_models_logits(smollm2, tmp_path, svd_root) -> None:
    load, batch = smollm2
    base = logits(load(), batch)
    method = svf(svd_root)
    model = method.attach(load(), "CAUSAL_LM")
    diff = (logits(model, batch) - base).abs().max().item()
    print(f"SmolLM2 (2 blocks, fp32), z = 1: max |logits − base| = {diff:.3g} (max |logit| {base.abs().max():.3g})")
    assert diff < 1e-3
    # Memory: the adapted matrices hold U, σ, Vᵀ (non-persistent) and z only; W is gone; only z trains.
    layers = svf_layers(model)
    assert len(layers) == 6 and all(not hasattr(m, "weight") for _, m in layers)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [f"{n}.{Z}" for n, _ in layers]
    keys = set(model.state_dict())
    assert not any(k.endswith((U_BUF, S_BUF, VH_BUF)) or ".mlp.gate_proj.weight" in k for k in keys)
    assert all(f"{n}.{b}" in model._ddp_params_and_buffers_to_ignore for n, _ in layers for b in (U_BUF, VH_BUF))


def test_svd_comes_from_the_shared_cache(tmp_path) -> None:
    """The second attach reads every SVD from disk, under the key LoRA-Dash uses too (model id, <module>.weight)."""
    from spectune.methods.lora_dash_layer import model_identity

    cache = SVDCache(tmp_path / "svd")
    model = tiny_llama()
    w = model.model.layers[1].mlp.down_proj.weight.detach().clone()
    SVF(SvfSpec(target_modules=MLP), svd_cache=cache).attach(model, "CAUSAL_LM")
    assert (cache.hits, cache.misses) == (0, 6)
    assert cache.path_for(model_identity(tiny_llama()), "model.layers.1.mlp.down_proj.weight", w).exists()
    SVF(SvfSpec(target_modules=MLP), svd_cache=cache).attach(tiny_llama(), "CAUSAL_LM")
    assert (cache.hits, cache.misses) == (6, 6)


def _perturb(model: nn.Module, seed: int = 5, scale: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in svf_layers(model):
            p = getattr(layer, Z)
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("form", ["paper", "official"])
def test_expert_round_trip_merge_and_update_factors(smollm2, tmp_path, form, svd_root) -> None:
    load, batch = smollm2
    method = svf(svd_root, form=form, target_modules=["gate_proj", "down_proj", "q_proj"])
    model = method.attach(load(), "CAUSAL_LM")
    _perturb(model)
    trained = logits(model, batch)
    method.save(model, tmp_path / "expert")
    files = sorted(p.name for p in (tmp_path / "expert").iterdir())
    assert files == [RESUME := "model.safetensors", EXPERT_FILE] and RESUME
    size = (tmp_path / "expert" / EXPERT_FILE).stat().st_size
    assert size < 40_000, f"an expert is a small file: {size} bytes"
    tensors, meta = read_expert(tmp_path / "expert")
    assert meta["form"] == form and len(meta["targets"]) == 6 and meta["base"]["fingerprint"]
    assert meta["base"]["config"]["num_hidden_layers"] == 2

    loaded = svf(svd_root).load_adapter(load(), tmp_path / "expert")
    torch.testing.assert_close(logits(loaded, batch), trained, rtol=0, atol=1e-5)
    assert not any(p.requires_grad for p in loaded.parameters())

    merged = method.merged(model)
    assert not svf_layers(merged) and isinstance(merged.model.layers[0].mlp.gate_proj, nn.Linear)
    assert set(merged.state_dict()) == set(load().state_dict())
    assert not hasattr(merged, "_svf_meta") and svf_layers(model)  # the trained model is untouched
    assert "save_pretrained" not in vars(merged)  # the class's own: the merged export saves whole weights
    torch.testing.assert_close(logits(merged, batch), trained, rtol=0, atol=1e-4)

    # ΔW = W' − W as factors (B, A): equal to the dense difference, against the original weights.
    plain = dict(load().named_modules())
    for name, (B, A) in method.update_factors(model).items():
        layer = dict(model.named_modules())[name]
        dense = layer.dense_weight() - plain[name].weight.detach()
        torch.testing.assert_close(B @ A, dense, rtol=0, atol=2e-5)
        assert B.dtype == torch.float32 and B.device.type == "cpu"


def test_a_different_base_is_refused_and_transfer_uses_the_other_models_svd(smollm2, tmp_path, svd_root) -> None:
    from transformers import AutoModelForCausalLM

    load, batch = smollm2
    method = svf(svd_root)
    model = method.attach(load(), "CAUSAL_LM")
    _perturb(model)
    method.save(model, tmp_path / "expert")
    torch.manual_seed(0)
    other = AutoModelForCausalLM.from_config(load().config).eval()  # same shapes, random weights
    with pytest.raises(ValueError, match=r"trained on another base model.*allow_other_base=True"):
        svf(svd_root).load_adapter(other, tmp_path / "expert")
    other_plain = {n: m.weight.detach().clone() for n, m in other.named_modules() if n.endswith(tuple(MLP))}
    moved = svf(svd_root).load_adapter(other, tmp_path / "expert", allow_other_base=True)
    z = SVF.expert_z(tmp_path / "expert")
    for name, layer in svf_layers(moved):
        torch.testing.assert_close(layer.multipliers(), z[name])  # the expert's z ...
    saved = SVF.get_z(moved)
    SVF.set_z(moved, {n: torch.ones_like(v) for n, v in saved.items()})
    for name, layer in svf_layers(moved):  # ... on the other model's own U, σ, V: z = 1 gives its W back
        torch.testing.assert_close(layer.dense_weight(), other_plain[name], rtol=0, atol=1e-5)
    assert moved._svf_meta["base"]["transferred_from"]["fingerprint"] == model._svf_meta["base"]["fingerprint"]
    # Shapes must match even then.
    from transformers import LlamaConfig

    small = AutoModelForCausalLM.from_config(LlamaConfig(**{**load().config.to_dict(), "intermediate_size": 64}))
    with pytest.raises(ValueError, match="shapes differ"):
        svf(svd_root).load_adapter(small, tmp_path / "expert", allow_other_base=True)


def test_mixtures_set_z_of_every_layer(smollm2, tmp_path, svd_root) -> None:
    """Transformer²'s adaptation: z' = Σ_k α_k z_k set on a loaded model; official experts mix sigmoid(p)·max_mult."""
    load, batch = smollm2
    folders = []
    for i, form in enumerate(["official", "official"]):
        m = svf(svd_root, form=form, seed=i)
        model = m.attach(load(), "CAUSAL_LM")
        _perturb(model, seed=10 + i, scale=1.0)
        m.save(model, tmp_path / f"e{i}")
        folders.append(tmp_path / f"e{i}")
    zs = [SVF.expert_z(f) for f in folders]
    ps = [SVF.expert_params(f) for f in folders]
    name = next(iter(zs[0]))
    torch.testing.assert_close(zs[0][name], torch.sigmoid(ps[0][name]))
    model = svf(svd_root).load_adapter(load(), folders[0])
    alpha = (0.3, 0.9)
    mix = {n: alpha[0] * zs[0][n] + alpha[1] * zs[1][n] for n in zs[0]}
    SVF.set_z(model, mix)
    for n, layer in svf_layers(model):
        assert layer.mapping == "identity" and layer.rescale
        torch.testing.assert_close(layer.multipliers(), mix[n])
        U, S, Vh = (getattr(layer, b) for b in (U_BUF, S_BUF, VH_BUF))
        want = (U @ torch.diag(S * mix[n]) @ Vh) * (S.sum() / (S * mix[n]).sum())
        torch.testing.assert_close(layer.dense_weight(), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(SVF.get_z(model)[name], mix[name])
    # The base model through the same object: z = 1 (and no mapping) gives W back, rescaled or not.
    SVF.set_z(model, {n: torch.ones_like(z) for n, z in mix.items()})
    torch.testing.assert_close(logits(model, batch), logits(load(), batch), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="one z per SVF layer"):
        SVF.set_z(model, {name: mix[name]})


def test_fingerprint_samples_stay_inside_large_matrices() -> None:
    """An 8B MLP matrix has 58,720,256 entries: a float32 linspace would index one past the end."""
    for numel in (1, 7, 4096, 4097, 4096 * 14336):
        idx = sample_indices(numel)
        assert idx[0] == 0 and idx[-1] == numel - 1 and len(idx) == min(4096, numel)
        assert bool((idx[1:] > idx[:-1]).all())


def test_spec_and_target_errors_name_the_fix(tmp_path, svd_root) -> None:
    with pytest.raises(ValueError, match="method.form='dense'"):
        SvfSpec(form="dense")
    with pytest.raises(ValueError, match="max_mult"):
        SvfSpec(max_mult=0)
    with pytest.raises(ValueError, match="Target modules"):
        svf(svd_root, target_modules=["nope"]).attach(tiny_llama(), None)
    model = svf(svd_root).attach(tiny_llama(), None)
    with pytest.raises(RuntimeError, match="already carries SVF"):
        svf(svd_root).attach(model, None)
    with pytest.raises(ValueError, match="tied"):
        from transformers import LlamaConfig, LlamaForCausalLM

        tied = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                            num_attention_heads=2, vocab_size=32, tie_word_embeddings=True))
        svf(svd_root, target_modules=["lm_head"]).attach(tied, None)
    with pytest.raises(FileNotFoundError, match="no SVF expert"):
        svf(svd_root).load_adapter(tiny_llama(), tmp_path)


def _lm_rows(n: int = 16, length: int = 12) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 64, (n, length), generator=g)
    return [{"input_ids": r, "attention_mask": torch.ones_like(r), "labels": r.clone()} for r in ids]


def _trainer(model: nn.Module, out: Path, steps: int, save_steps: int = 2):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=16, max_steps=steps, learning_rate=5e-2,
                             lr_scheduler_type="constant", logging_steps=1, save_strategy="steps",
                             save_steps=save_steps, report_to=[], use_cpu=True, disable_tqdm=True, seed=0, data_seed=0,
                             remove_unused_columns=False)
    return Trainer(model=model, args=args, train_dataset=_lm_rows())


def test_trainer_saves_the_expert_only_and_resumes_from_its_checkpoint(tmp_path, svd_root) -> None:
    """Trainer.save_model (the recipe's save) writes the expert through the model's save_pretrained; a Trainer
    resume reads the checkpoint's model.safetensors (z under its state-dict names) and ends where the run ended."""
    spec = dict(target_modules=MLP, form="official")
    method = build_method("svf", **spec)
    model = method.attach(tiny_llama(), "CAUSAL_LM")
    trainer = _trainer(model, tmp_path / "run", steps=4)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]
    trainer.save_model(str(tmp_path / "adapter"))
    method.save_extras(model, tmp_path / "adapter")
    names = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert names == ["model.safetensors", EXPERT_FILE, "training_args.bin"], names
    final = SVF.get_z(model)
    loaded = build_method("svf", **spec).load_adapter(tiny_llama(), tmp_path / "adapter")
    x = torch.arange(10).reshape(1, 10)
    torch.testing.assert_close(logits(loaded, {"input_ids": x}), logits(model, {"input_ids": x}), rtol=0, atol=1e-6)

    fresh = build_method("svf", **spec).attach(tiny_llama(), "CAUSAL_LM")
    resumed = _trainer(fresh, tmp_path / "run", steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    for n, z in SVF.get_z(fresh).items():
        torch.testing.assert_close(z, final[n], rtol=0, atol=1e-6)


def test_bf16_model_trains_z_in_fp32(tmp_path, svd_root) -> None:
    method = build_method("svf", target_modules=MLP + ["q_proj", "v_proj"])
    model = method.attach(tiny_llama().to(torch.bfloat16), "CAUSAL_LM")
    layer = svf_layers(model)[0][1]
    assert getattr(layer, U_BUF).dtype == torch.bfloat16 and getattr(layer, Z).dtype == torch.float32
    trainer = _trainer(model, tmp_path / "run", steps=8, save_steps=100)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] and all(map(lambda v: v == v, losses))
    assert getattr(layer, Z).dtype == torch.float32 and (getattr(layer, Z) != 1).any()


@pytest.mark.slow
def test_cli_next_token_training_lowers_the_loss(tmp_path) -> None:
    """The real path: ``python -m spectune.train ... method=svf`` on SmolLM2 (2 blocks), 4 steps on one batch of 8
    GSM8K items (~30 s on 2 busy cores)."""
    import json
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "spectune.train", "model=smollm2", "model.num_layers=2", "task=plora/gsm8k",
           "task.n_train=4", "task.n_test=2", "method=svf", "train.epochs=3", "train.batch_size=4",
           "train.max_length=96", "train.lr=1e-2", "train.logging_steps=1", "logger=disabled",
           f"runs_root={tmp_path}", "export_merged=false"]
    done = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "single" / "smollm2" / "svf-paper-mlp" / "gsm8k" / "seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["train_steps"] == 3
    assert summary["train_loss_last"] < summary["train_loss_first"]
    assert summary["trainable_params"] == 6 * 576  # one z per MLP matrix of 2 blocks, k = 576
    assert (run / "adapter" / EXPERT_FILE).exists()


def test_encoder_mlp_regex_and_the_classifier_head_travel_in_the_expert(tmp_path, svd_root) -> None:
    """The encoders' ``mlp`` set (a regex in conf/model/minilm.yaml) picks intermediate.dense and each layer's own
    output.dense, not attention.output.dense; with task_type SEQ_CLS the classifier head trains and is saved."""
    import yaml
    from transformers import BertConfig, BertForSequenceClassification

    from spectune.config import CONF_DIR

    regex = yaml.safe_load((CONF_DIR / "model" / "minilm.yaml").read_text())["target_modules"]["mlp"]

    def base():
        torch.manual_seed(0)
        return BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=48, vocab_size=50, num_labels=2)).eval()

    method = svf(svd_root, target_modules=regex)
    model = method.attach(base(), "SEQ_CLS")
    assert [n for n, _ in svf_layers(model)] == [f"bert.encoder.layer.{i}.{m}" for i in (0, 1)
                                                 for m in ("intermediate.dense", "output.dense")]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} < trainable and len(trainable) == 6
    _perturb(model)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    x = {"input_ids": torch.arange(12).reshape(2, 6)}
    method.save(model, tmp_path / "expert")
    loaded = svf(svd_root).load_adapter(base(), tmp_path / "expert")
    torch.testing.assert_close(loaded(**x).logits, model(**x).logits, rtol=0, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_layer_eager_and_compiled_follow_the_float64_dense_formula(dtype, compiled) -> None:
    """One LLaMA-3-8B down-shaped layer (official form) on the GPU against the float64 dense official formula.

    Measured on an H200 (4096 × 14336, batch 2 × 512): relative error of y, dx, dz 1.5e-6 (fp32, eager and
    compiled), 4.4e-3 (bf16 eager), 4.1e-3 (bf16 compiled)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = torch.Generator("cuda").manual_seed(0)
    W = torch.randn(4096, 14336, dtype=torch.float64, device="cuda", generator=g) / 120
    f = svd(W, dtype=torch.float64)
    p = 0.1 + 0.01 * torch.randn(4096, dtype=torch.float64, device="cuda", generator=g)
    x = torch.randn(2, 512, 14336, dtype=torch.float64, device="cuda", generator=g)
    gy = torch.randn(2, 512, 4096, dtype=torch.float64, device="cuda", generator=g)
    pz = p.float().double().requires_grad_(True)  # z as the layer stores it (fp32)
    dense = official_dense(f.U, f.S, f.Vh, pz)
    xd = x.clone().requires_grad_(True)
    yd = xd @ dense.mT
    yd.backward(gy)
    layer = SVFLinear(f.U.to(dtype), f.S.float(), f.Vh.to(dtype), None, p.float(), mapping="sigmoid",
                      rescale=True).cuda()
    run = torch.compile(layer, fullgraph=True) if compiled else layer
    xx = x.to(dtype).requires_grad_(True)
    y = run(xx)
    y.backward(gy.to(dtype))
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for got, want in [(y, yd), (xx.grad, xd.grad), (getattr(layer, Z).grad, pz.grad)]:
        assert ((got.double() - want).norm() / want.norm()).item() < tol
