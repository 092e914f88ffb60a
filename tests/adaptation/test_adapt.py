"""Transformer²'s two-pass inference end to end on SmolLM2 cut to 2 blocks with tiny hand-made SVF experts.

Experts are made here (``SVF`` attached, z set by hand, saved by the method), never trained. Every strategy runs on
2 ARC-Challenge test items with 2 new tokens: scores in range, timings > 0, shots never scored, and the "other"
class answered with the base model's own weights (logits and gold likelihoods equal to the base model's), also
right after an expert answered (the official code's defect). Experts move to a model of the same shapes only with
allow_other_base.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spectune.adaptation.cem import CEMSettings
from spectune.adaptation.classify import CLASSIFICATION_PROMPT, classification_prompt, domain_of
from spectune.adaptation.cls_data import (
    ClassifierRewardTask,
    classifier_data,
    classifier_rewards,
    write_classifier_data,
)
from spectune.adaptation.experts import ExpertModel, load_expert, load_experts
from spectune.adaptation.settings import AdaptSettings, ExpertError, FewShotSettings
from spectune.adaptation.two_pass import answer, answer_routes, draw_shots, run_dispatch, run_few_shot
from spectune.data.t2_tasks import build_prompt, gold_continuation, load_t2
from spectune.methods.svf import SVF, SvfSpec, svf_layers
from spectune.spectral import SVDCache

CONF = Path(__file__).resolve().parents[2] / "conf"
TARGETS = ["down_proj"]  # one matrix per block keeps the SVDs cheap; the official experts adapt gate/up/down
# 2 new tokens everywhere; gold bits per byte (a full-vocabulary likelihood pass) only where a test checks it.
SETTINGS = AdaptSettings(batch_size=4, max_new_tokens=2, classify_max_new_tokens=2, bits_per_byte=False,
                         few_shot=FewShotSettings(shots=3, cem=CEMSettings(population=2, iterations=2, seed=0)))
WITH_BPB = dataclasses.replace(SETTINGS, bits_per_byte=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread mostly spins (a first SVD took 10 s
    with 2 threads, 0.2 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """SmolLM2 (2 blocks), its tokenizer, an SVD cache, three experts (math, reasoning, a classifier; official form,
    z = sigmoid(p) with p perturbed by hand; down_proj only) and 8 train / 2 test ARC-Challenge records."""
    from spectune.models import load_model_and_tokenizer

    root = tmp_path_factory.mktemp("adapt")
    cache = SVDCache(root / "svd")
    base, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=2)
    base.eval()
    folders = {}
    for i, name in enumerate(["math", "reasoning", "classifier"]):
        method = SVF(SvfSpec(form="official", seed=i, target_modules=TARGETS), svd_cache=cache)
        model = method.attach(copy.deepcopy(base), "CAUSAL_LM")
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for _, layer in svf_layers(model):
                layer.svf_z.add_(1.5 * torch.randn(layer.svf_z.shape, generator=g))
        method.save(model, root / name)
        folders[name] = root / name
    train, _, test, _ = load_t2("t2_arc_challenge", "embedded", 8, 0, 2, 0)
    return {"root": root, "cache": cache, "base": base, "tok": tok, "folders": folders, "train": train,
            "test": test}


def expert_model(world, base_weights: str = "exact", extra: bool = False) -> ExpertModel:
    f = world["folders"]
    experts = load_experts([f["math"], f["reasoning"]], ["math", "reasoning"])
    cls = [load_expert(f["classifier"])] if extra else []
    return ExpertModel(copy.deepcopy(world["base"]), experts, cls, base_weights=base_weights,
                       svd_cache=world["cache"])


@torch.no_grad()
def logits(model, tok) -> torch.Tensor:
    batch = tok(["Natalia sold clips to 48 of her friends.", "The answer is (C)."], return_tensors="pt",
                padding=True)
    return model(**batch).logits


def gold_nll(model, tok, records) -> list[float]:
    from spectune.evaluation.likelihood import score_gold

    return list(score_gold(model, tok, [build_prompt(r, tok) for r in records],
                           [gold_continuation(r) for r in records], batch_size=4).nll)


# --------------------------------------------------------------------------------------------- base, experts, mixtures
def test_other_uses_the_base_weights_even_after_an_expert(world) -> None:
    tok, base = world["tok"], world["base"]
    reference = logits(base, tok)
    em = expert_model(world)
    assert torch.equal(logits(em.model, tok), reference)  # starts on the base weights
    em.use_expert(1)
    expert_logits = logits(em.model, tok)
    assert not torch.allclose(expert_logits, reference, atol=1e-2)
    em.use_base()  # after an expert was loaded: the base model's own layers, bit for bit
    assert torch.equal(logits(em.model, tok), reference) and em.state == "base"
    em.use_expert(1)
    torch.testing.assert_close(logits(em.model, tok), expert_logits, rtol=0, atol=0)
    # unit_z: z = 1 through the SVF layers, no kept copy; the base model up to rounding.
    light = expert_model(world, base_weights="unit_z")
    light.use_expert(0)
    light.use_base()
    torch.testing.assert_close(logits(light.model, tok), reference, rtol=0, atol=2e-3)

    # The second pass of a dispatch: expert group first, base group last; the base group's gold likelihood is the
    # plain base model's, the expert group's the expert's (loaded on its own by SVF.load_adapter).
    test = world["test"]
    groups, members, seconds = answer_routes(em, tok, test, [0, None], WITH_BPB)
    assert members == [[0], [1]] and seconds > 0
    assert groups[1].nll == gold_nll(base, tok, [test[1]])
    alone = SVF(SvfSpec(), svd_cache=world["cache"]).load_adapter(copy.deepcopy(base), world["folders"]["math"])
    np.testing.assert_allclose(groups[0].nll, gold_nll(alone, tok, [test[0]]), rtol=1e-5)


def test_mixtures_mix_each_experts_mapped_z(world) -> None:
    """z' = Σ_k α_k z_k over the experts' z after their sigmoid (official form), as single experts apply it."""
    em = expert_model(world)
    za, zb = (SVF.expert_z(world["folders"][n]) for n in ("math", "reasoning"))
    name = em.names[0]
    torch.testing.assert_close(za[name], torch.sigmoid(SVF.expert_params(world["folders"]["math"])[name]))
    em.use_mixture([0.25, 0.5])
    layers = dict(svf_layers(em.model))
    for n in em.names:
        torch.testing.assert_close(layers[n].multipliers(), 0.25 * za[n] + 0.5 * zb[n])
    per_matrix = np.zeros((2, len(em.names)))
    per_matrix[0, 0], per_matrix[1, 1:] = 1.0, 1.0  # matrix 0 from expert 0, the rest from expert 1
    em.use_mixture(per_matrix)
    torch.testing.assert_close(layers[em.names[0]].multipliers(), za[em.names[0]])
    torch.testing.assert_close(layers[em.names[1]].multipliers(), zb[em.names[1]])
    em.use_mixture([1.0, 0.0])  # a one-hot mixture is that expert
    one_hot = logits(em.model, world["tok"])
    em.use_expert(0)
    torch.testing.assert_close(logits(em.model, world["tok"]), one_hot, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="alpha must have shape"):
        em.use_mixture([1.0, 0.0, 0.0])


# --------------------------------------------------------------------------------------------- strategies end to end
def _check_common(res: dict, n: int, bpb: bool = False) -> None:
    s, t = res["score"], res["timing"]
    assert s["n"] == n and 0.0 <= s["exact_match"] <= 1.0
    assert (s["bits_per_byte"] > 0) if bpb else ("bits_per_byte" not in s)
    assert t["first_pass_seconds"] > 0 and t["second_pass_seconds"] > 0
    assert 0 < t["first_pass_share_of_total"] < 1
    assert t["first_pass_vs_second"] == pytest.approx(t["first_pass_seconds"] / t["second_pass_seconds"])
    json.dumps(res)  # JSON-able as is


def test_prompt_strategy_end_to_end(world) -> None:
    em = expert_model(world)
    test = world["test"]
    res = run_dispatch(em, world["tok"], test, WITH_BPB)
    _check_common(res, len(test), bpb=True)
    assert res["strategy"] == "prompt" and res["routing"]["classifier"] is None
    assert res["routing"]["domains"] == {"code": None, "math": 0, "reasoning": 1}
    for item in res["items"]:
        assert item["domain"] == domain_of(item["classification"])
        assert (item["answered_by"] == "base") == (item["domain"] not in ("math", "reasoning"))
    assert sum(res["routing"]["counts"].values()) == len(test)


def test_cls_expert_strategy_end_to_end(world) -> None:
    em = expert_model(world, extra=True)
    classifier = em.extra[0]
    res = run_dispatch(em, world["tok"], world["test"], SETTINGS, classifier=classifier)
    _check_common(res, len(world["test"]))
    assert res["strategy"] == "cls_expert"
    assert res["routing"]["classifier"]["sha256"] == classifier.sha256
    # The first pass ran under the classifier's z: its completions are the classifier's greedy ones.
    from spectune.adaptation.classify import classification_prompts
    from spectune.evaluation.t2_scoring import generate_greedy

    em.use_expert(classifier)
    again = generate_greedy(em.model, world["tok"], classification_prompts(world["test"], world["tok"]),
                            max_new_tokens=2)
    assert [i["classification"] for i in res["items"]] == again


def test_few_shot_end_to_end_never_scores_a_shot(world) -> None:
    em = expert_model(world)
    train, test = world["train"], world["test"]
    shots = draw_shots(train, SETTINGS.few_shot.shots, seed=0)
    res = run_few_shot(em, world["tok"], train, [*test, shots[1]], SETTINGS, seed=0)
    _check_common(res, len(test))  # the shot appended to the test items was dropped
    fs = res["few_shot"]
    assert fs["shots"] == [r.id for r in shots] and fs["shots_from"] == "train"
    assert fs["excluded_test_items"] == [shots[1].id]
    assert [i["id"] for i in res["items"]] == [r.id for r in test]
    assert all(0.0 <= a <= 1.0 for a in fs["alpha"]) and len(fs["alpha"]) == 2
    assert fs["evaluations"] == 2 * 2 and fs["distinct_evaluations"] <= 3  # the carried best is not re-run
    assert fs["tie_break"] == "gold" and fs["distinct_tie_evaluations"] <= fs["tie_evaluations"]
    assert res["timing"]["cem_search_seconds"] == res["timing"]["first_pass_seconds"] > 0
    assert 0.0 <= fs["shot_accuracy"] <= 1.0
    # The test items were answered with the chosen mixture.
    em.use_mixture(fs["alpha"])
    assert answer(em.model, world["tok"], test, SETTINGS).completions == [i["completion"] for i in res["items"]]


# --------------------------------------------------------------------------------------------- transfer, entry point
def _random_copy(world, folder: Path):
    """A random-init model of SmolLM2 (2 blocks)'s config, in memory (fp32) and saved (bf16) with the tokenizer."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    other = AutoModelForCausalLM.from_config(world["base"].config).eval()  # same shapes, random weights
    other.to(torch.bfloat16).save_pretrained(folder)
    world["tok"].save_pretrained(folder)
    other.to(torch.float32)  # the saved values, as the entry point loads them: one SVD cache entry for both
    other.config._name_or_path = str(folder)
    return other


def _compose(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("adapt", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def test_experts_move_to_a_model_of_the_same_shapes_only_when_allowed(world, tmp_path) -> None:
    """The entry point's allow_other_base: refused by name without it; with it the experts' z scale the other
    model's own singular values (SmolLM2 2 blocks vs a random-init copy of its config)."""
    from spectune.adapt import run
    from spectune.errors import UserError

    other_model = _random_copy(world, tmp_path / "random-smollm2")
    other = tmp_path / "random-smollm2"
    f = world["folders"]
    args = ["strategy=prompt", f"experts=[{f['math']},{f['reasoning']}]", "domains=[math,reasoning]",
            f"model.name_or_path={other}", "model.num_layers=2", "task.n_test=2", "eval.max_new_tokens=2",
            "classify.max_new_tokens=2", "eval.bits_per_byte=false", f"out_dir={tmp_path / 'out'}", "device=cpu"]
    with pytest.raises(UserError, match="allow_other_base=true"):
        run(_compose(args), svd_cache=world["cache"])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))
    path, result = run(_compose([*args, "allow_other_base=true"]), svd_cache=world["cache"])
    assert path.exists() and json.loads(path.read_text())["transferred_experts"] == [str(f["math"]),
                                                                                     str(f["reasoning"])]
    assert result["provenance"]["allow_other_base"] is True and result["provenance"]["seed"] == 0
    assert result["provenance"]["expert_paths"] == [str(f["math"]), str(f["reasoning"])]
    assert result["provenance"]["commit"]["commit"] and result["provenance"]["device"]["used"] == "cpu"
    assert [e["sha256"] for e in result["experts"]] == [load_expert(f[n]).sha256 for n in ("math", "reasoning")]

    # In the library: the z is the expert's, the U, σ, V the other model's.
    moved = other_model
    plain = {n: m.weight.detach().clone() for n, m in moved.named_modules() if n.endswith("mlp.down_proj")}
    experts = load_experts([f["math"]], ["math"])
    with pytest.raises(ExpertError, match="another base model"):
        ExpertModel(copy.deepcopy(moved), experts, svd_cache=world["cache"])
    em = ExpertModel(moved, experts, allow_other_base=True, svd_cache=world["cache"])
    em.use_expert(0)
    for n, layer in svf_layers(em.model):
        torch.testing.assert_close(layer.multipliers(), experts[0].z[n])
    em.use_z({n: torch.ones_like(z) for n, z in experts[0].z.items()}, "unit")
    assert set(plain) == {n for n, _ in svf_layers(em.model)}
    for n, layer in svf_layers(em.model):
        torch.testing.assert_close(layer.dense_weight(), plain[n], rtol=0, atol=1e-5)


def test_the_light_expert_lookup_names_the_methods_file() -> None:
    from spectune.adaptation.sources import EXPERT_FILE
    from spectune.methods.svf import EXPERT_FILE as SVF_FILE

    assert EXPERT_FILE == SVF_FILE


def test_result_files_are_never_overwritten(tmp_path) -> None:
    from spectune.adapt import write_new_json

    stem = tmp_path / "a" / "result-seed0-x"
    first, second = write_new_json(stem, {"n": 1}), write_new_json(stem, {"n": 2})
    assert first.name == "result-seed0-x.json" and second.name == "result-seed0-x-1.json"
    assert json.loads(first.read_text()) == {"n": 1} and json.loads(second.read_text()) == {"n": 2}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["result-seed0-x-1.json", "result-seed0-x.json"]


# --------------------------------------------------------------------------------------------- first pass, classifier
def test_official_classification_prompt_and_parsing(world) -> None:
    # SakanaAI/self-adaptive-llms 03a41ae utils.py:166-181 (== tasks/cls.py:110-125), checked byte for byte when
    # written; the hash guards it.
    assert hashlib.sha256(CLASSIFICATION_PROMPT.encode()).hexdigest() == \
        "460ab41f3ba78c1f791d5ee1c8a3bf8a4c97bf78b91f03d1b159642d61e77a6a"
    text = classification_prompt("What is 2 + 2?", world["tok"])
    assert CLASSIFICATION_PROMPT.strip() in text and text.rstrip().endswith("assistant")
    assert domain_of("Classification: \\boxed{math}") == "math"
    assert domain_of("\\boxed{code} then \\boxed{math}") == "code"  # the first box
    for other in ("\\boxed{Math}", "\\boxed{ math}", "math", "\\boxed{other}", "\\boxed{physics}"):
        assert domain_of(other) == "other"


def test_classifier_data_come_from_the_experts_train_splits_only(tmp_path, world) -> None:
    data = classifier_data(n_train=4, n_valid=2, n_test=4, seed=0)
    assert len(data.train) == 12 and len(data.valid) == 6
    assert {r.answer for r in data.train} == {"math", "code", "reasoning"}
    for task, src in data.meta["sources"].items():
        assert task in ("t2_gsm8k", "t2_mbpp", "t2_arc_easy")
        ids = {r.id.split(":", 1)[1] for r in data.train if r.id.startswith(task + ":")}
        assert ids == {str(i) for i in src["train_indices"]}
        assert not set(src["train_indices"]) & set(src["excluded_test_indices"])
        assert not set(src["valid_indices"]) & set(src["excluded_test_indices"])
    # The experts' test items of the same carve-out stay out.
    _, _, gsm_test, _ = load_t2("t2_gsm8k", "embedded", 4, 2, 4, 0)
    assert not {r.instruction for r in gsm_test} & {r.instruction for r in data.train + data.valid}
    with pytest.raises(ValueError, match="ARC-Challenge test items"):
        classifier_data({"t2_arc_challenge": "reasoning"}, n_train=4, n_valid=2, n_test=4)
    r = data.train[0]
    assert classifier_rewards([r, r], [f"Classification: \\boxed{{{r.answer}}}", "\\boxed{other}"]) == [1.0, -1.0]
    # The repo's REINFORCE loop trains an SVF classifier on these data (one iteration here) through the reward task.
    from spectune.training.reinforce import RLSettings, train_reinforce

    method = SVF(SvfSpec(form="official", target_modules=TARGETS), svd_cache=world["cache"])
    model = method.attach(copy.deepcopy(world["base"]), "CAUSAL_LM")
    task = ClassifierRewardTask(world["tok"])
    assert task.prompts(data.train[:1]) == [classification_prompt(data.train[0].instruction, world["tok"])]
    before = {n: layer.svf_z.detach().clone() for n, layer in svf_layers(model)}
    settings = RLSettings(iterations=1, batch_prompts=2, max_new_tokens=2, eval_every=1, micro_batch=2, gen_batch=2,
                          lr=0.5, max_grad_norm=1.0)
    result = train_reinforce(model, world["tok"], method, data.train, data.valid[:2], task, settings)
    assert result.iterations == 1 and len(result.losses) == 1 and result.best_iteration == 1
    assert all(0.0 <= c["exact_match"] <= 1.0 and c["bits_per_byte"] > 0 for c in result.curve)
    assert any(not torch.equal(before[n], layer.svf_z) for n, layer in svf_layers(model))  # z was trained
    write_classifier_data(data, tmp_path / "cls", world["tok"])
    rows = [json.loads(x) for x in (tmp_path / "cls" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and rows[0]["target"] == rows[0]["output"] and CLASSIFICATION_PROMPT.strip() in \
        rows[0]["prompt"]
