"""``train.objective=reinforce`` (Transformer²'s REINFORCE, spectune.training.reinforce) and the t2 next-token features.

- The batched loss J = (1/B) Σ_i [−r_i Σ_t log π_θ(ŷ_{i,t}) + λ Σ_t KL_t] and its gradient against a hand computation
  in float64: each sequence alone, unpadded, π_base from an independent copy of the base model (no adapter at all).
- λ = 0 never enters the base context and runs one forward pass per micro-batch.
- An end-to-end run through the recipe (SmolLM2 cut to 2 blocks, ARC-Easy, SVF): curve, events, the best state
  saved as the adapter (not the last one), reloaded by the evaluate path's loader.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from spectune.methods import build_method
from spectune.training.reinforce import Rollout, policy_gradient_step, trim_completion

# Prompt / completion token ids of the tiny model (vocab 64); lengths differ, one completion is empty.
ROLLOUTS = [Rollout([5, 9, 3], [7, 7, 2, 11], ""), Rollout([1, 2, 3, 4, 5, 6], [8], ""),
            Rollout([12, 13], [14, 15, 16, 17, 18, 19], ""), Rollout([20, 21, 22], [], ""),
            Rollout([30, 31, 32, 33], [40, 41], "")]
REWARDS = [1.0, -1.0, 1.0, -1.0, -1.0]


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=64, pad_token_id=0,
                      initializer_range=0.2)  # peaked enough for the KL term to matter
    return LlamaForCausalLM(cfg).double().eval()


def policy_and_base(method_name: str):
    """(policy with a non-zero update, an independent copy of the base, the method) in float64."""
    model = tiny_llama()
    base = copy.deepcopy(model)
    if method_name == "lora":
        method = build_method("lora", r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"])
    else:
        method = build_method("svf", target_modules=["gate_proj", "up_proj", "down_proj"], svd_cache=False)
    model = method.attach(model, "CAUSAL_LM").double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # LoRA's B (zero at init) and SVF's z (one at init) moved off the identity
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model, base, method


def hand_loss(model, base, kl_coef: float, kl_form: str) -> torch.Tensor:
    """J written out per sequence: no padding, no batching, π_base from the plain base model."""
    terms = []
    for r, roll in zip(REWARDS, ROLLOUTS, strict=True):
        p, c = roll.prompt_ids, roll.completion_ids
        if not c:
            terms.append(torch.zeros((), dtype=torch.float64))
            continue
        ids = torch.tensor([p + c])
        rows = torch.arange(len(p) - 1, len(p) + len(c) - 1)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, rows].double(), -1)
        with torch.no_grad():
            logb = torch.log_softmax(base(input_ids=ids).logits[0, rows].double(), -1)
        pg = -r * logp[torch.arange(len(c)), torch.tensor(c)].sum()
        if kl_form == "paper":
            kl = (logp.exp() * (logp - logb)).sum()
        else:
            kl = (logb.exp() * (logb - logp)).sum()
        terms.append(pg + kl_coef * kl)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("method_name", ["lora", "svf"])
@pytest.mark.parametrize("kl_form", ["paper", "official"])
def test_loss_and_gradient_match_a_hand_computation_in_float64(method_name: str, kl_form: str) -> None:
    model, base, method = policy_and_base(method_name)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    parts = policy_gradient_step(model, ROLLOUTS, REWARDS, kl_coef=0.2, kl_form=kl_form,
                                 base_context=lambda: method.base_model_context(model), micro_batch=3, pad_id=0)
    got = {n: p.grad.clone() for n, p in params.items()}
    for p in params.values():
        p.grad = None
    expected = hand_loss(model, base, 0.2, kl_form)
    expected.backward()
    # SVF's base is U diag(σ) Vᵀ from an fp32 SVD: equal to W to ~1e-7, not to float64 precision.
    tol = {"rtol": 1e-9, "atol": 1e-11} if method_name == "lora" else {"rtol": 2e-5, "atol": 1e-6}
    assert parts.loss == pytest.approx(expected.item(), rel=tol["rtol"], abs=tol["atol"])
    assert parts.kl is not None and parts.kl > 1e-2  # the update is far enough from the base for KL to matter
    assert parts.tokens == sum(len(r.completion_ids) for r in ROLLOUTS)
    assert parts.base_passes == 2  # 5 sequences, micro-batches of 3
    for n, p in params.items():
        torch.testing.assert_close(got[n], p.grad, rtol=max(tol["rtol"], 1e-7) if method_name == "lora" else 1e-3,
                                   atol=tol["atol"] if method_name == "lora" else 1e-5, msg=n)


def test_kl_zero_enters_no_base_context_and_runs_one_pass_per_micro_batch() -> None:
    model, _, _ = policy_and_base("lora")
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))

    @contextmanager
    def forbidden():
        raise AssertionError("the base policy was computed with kl_coef=0")
        yield

    parts = policy_gradient_step(model, ROLLOUTS, REWARDS, kl_coef=0.0, base_context=forbidden, micro_batch=2,
                                 pad_id=0)
    assert parts.kl is None and parts.base_passes == 0
    # 5 sequences sorted by length in micro-batches of 2: [empty, 6], [7, 7], [8]; the empty completion scores nothing.
    assert len(calls) == 3 and parts.loss == pytest.approx(parts.pg)
    calls.clear()
    entered: list[int] = []
    parts = policy_gradient_step(model, ROLLOUTS, REWARDS, kl_coef=0.1,
                                 base_context=lambda: counting_context(entered), micro_batch=2, pad_id=0)
    assert len(entered) == parts.base_passes == 3 and len(calls) == 6  # one base pass before each policy pass


@contextmanager
def counting_context(entered: list[int]):
    entered.append(1)
    yield


def test_rollouts_are_the_evaluation_path_and_seeded_when_sampled() -> None:
    """Greedy rollouts give the texts the t2 evaluation generates (official: rollouts = the evaluation path); the scored
    ids are the generated ones; sampled rollouts repeat under the same seed."""
    from spectune.evaluation.t2_scoring import generate_greedy
    from spectune.models import load_model_and_tokenizer
    from spectune.training.reinforce import rollout

    model, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=1)
    prompts = ["<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n", "Question: 2 + 2 =\nAnswer:"]
    greedy = rollout(model, tok, prompts, max_new_tokens=4, batch_size=2)
    assert [r.text for r in greedy] == generate_greedy(model, tok, prompts, max_new_tokens=4, batch_size=2)
    for r, p in zip(greedy, prompts, strict=True):
        assert r.prompt_ids == tok(p, add_special_tokens=False)["input_ids"] and 0 < len(r.completion_ids) <= 4
        assert tok.decode(r.completion_ids, skip_special_tokens=True) == r.text
    a, b = (rollout(model, tok, prompts, 4, batch_size=2, sampling="sample", seed=7) for _ in range(2))
    assert [r.completion_ids for r in a] == [r.completion_ids for r in b]


def test_trim_completion_scores_the_tokens_before_the_stop_string() -> None:
    from spectune.models import load_model_and_tokenizer

    _, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=1)
    ids = tok(" The answer is (B).\n\nInstruction: more", add_special_tokens=False)["input_ids"]
    scored, text = trim_completion(tok, [*ids, tok.eos_token_id, 17, 17], {tok.eos_token_id}, ["Instruction:"])
    assert text == " The answer is (B).\n\n"
    assert tok.decode(scored) == text and scored == ids[:len(scored)]
    scored, text = trim_completion(tok, [*ids[:3], tok.eos_token_id, 5], {tok.eos_token_id}, ["Instruction:"])
    assert scored == ids[:3] and text == tok.decode(ids[:3])


def test_t2_next_token_features_are_the_scored_prompt_and_gold_answer() -> None:
    from spectune.data.t2_tasks import sft_pair
    from spectune.data.tasks import load_task
    from spectune.evaluation.likelihood import encode_pair
    from spectune.models import load_model_and_tokenizer
    from spectune.training.features import t2_features

    _, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=1)
    records = load_task("t2/arc_easy", n_train=2, n_valid=1, n_test=1, seed=0).train
    feats = t2_features(records, tok, max_length=512, train_on_inputs=False)
    for r, f in zip(records, feats, strict=True):
        p_ids, t_ids = encode_pair(tok, *sft_pair(r, tok))
        assert f["input_ids"] == p_ids + t_ids + [tok.eos_token_id]
        assert f["labels"] == [-100] * len(p_ids) + t_ids + [tok.eos_token_id]
        assert tok.decode(t_ids).endswith(f"The answer is ({r.answer}).")
    assert t2_features(records, tok, 512, train_on_inputs=True)[0]["labels"] == feats[0]["input_ids"]
    with pytest.raises(ValueError, match="train.max_length=64 leaves no target token"):
        t2_features(records, tok, max_length=64)


# --------------------------------------------------------------------------------------------------- end to end
RUN = ["model=smollm2", "model.num_layers=2", "method=svf", "task=t2/arc_easy", "task.n_train=4", "task.n_valid=1",
       "task.n_test=1", "train.objective=reinforce", "train.rl.iterations=2", "train.rl.batch_prompts=2",
       "train.rl.eval_every=1", "train.rl.max_new_tokens=4", "train.rl.kl_coef=0.1", "train.batch_size=2",
       "train.eval_batch_size=2", "train.lr=2e-2", "eval.batch_size=2", "export_merged=false", "keep_checkpoints=true",
       "logger=disabled", "train.num_threads=2"]


def test_reinforce_run_end_to_end(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from safetensors.torch import load_file

    from spectune.config import CONF_DIR
    from spectune.training.recipe import train_and_evaluate

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[*RUN, f"runs_root={tmp_path}"])
    run = tmp_path / "run"
    summary = train_and_evaluate(cfg, run)
    assert summary["status"] == "finished" and summary["objective"] == "reinforce" and summary["train_steps"] == 2
    curve = json.loads((run / "rl_curve.json").read_text())
    assert curve["finished"] and [e["iteration"] for e in curve["evaluations"]] == [0, 1, 2]
    assert curve["best_iteration"] in (1, 2) and summary["rl"]["best_iteration"] == curve["best_iteration"]
    assert not curve["evaluations"][0]["candidate"]  # the start is on the curve, not a candidate (official)
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rl = [e for e in events if e["event"] == "rl"]
    assert [e["step"] for e in rl] == [1, 2] and all(e["prompts"] == 2 and e["kl"] is not None for e in rl)
    assert [e["step"] for e in events if e["event"] == "rl_valid"] == [0, 1, 2]
    # The adapter is the best state (checkpointed when it was found), not the last one.
    best = json.loads((run / "checkpoints" / "rl-best" / "rl_best.json").read_text())
    assert best["iteration"] == curve["best_iteration"]
    saved = load_file(str(run / "adapter" / "svf_expert.safetensors"))
    checkpointed = load_file(str(run / "checkpoints" / "rl-best" / "svf_expert.safetensors"))
    assert saved.keys() == checkpointed.keys() and all(torch.equal(saved[k], checkpointed[k]) for k in saved)
    assert any(not torch.equal(v, torch.ones_like(v)) for v in saved.values())  # z moved from the paper's z = 1
    # The evaluate path's loader (training.artifacts.load_trained, used by the recipe's scoring and evaluate --run)
    # puts exactly the saved z back on a fresh base model.
    from spectune.methods.svf import SVF
    from spectune.training.artifacts import load_trained, run_config

    model, _, _ = load_trained(run_config(run), run)
    assert {f"{n}.svf_z": z for n, z in SVF.get_z(model).items()}.keys() == saved.keys()
    assert all(torch.equal(z, saved[f"{n}.svf_z"]) for n, z in SVF.get_z(model).items())
    assert json.loads((run / "eval_results.json").read_text())["t2_arc_easy"]["n"] == 1


# --------------------------------------------------------------------------------------------------- reward shaping
def test_shape_rewards_is_the_official_rw_norm_then_rw_clip() -> None:
    """Against a hand computation: z-scores with the population std (np.std, official ``get_rewards``), then clipping;
    constant rewards give zeros (std floored at 1e-7), not NaN."""
    from spectune.training.reinforce import shape_rewards

    r = [1.0, -1.0, -1.0, -1.0, 1.0, -1.0]
    n = len(r)
    mean = sum(r) / n
    std = (sum((x - mean) ** 2 for x in r) / n) ** 0.5
    assert shape_rewards(r, norm=True) == pytest.approx([(x - mean) / std for x in r], abs=1e-12)
    assert shape_rewards(r, norm=True, clip=1.0) == pytest.approx([min(max((x - mean) / std, -1), 1) for x in r])
    assert shape_rewards(r) == r and shape_rewards(r, clip=0.0) == r
    assert shape_rewards([-1.0] * 4, norm=True) == [0.0] * 4


def test_reinforce_raises_the_held_out_reward_of_smollm2() -> None:
    """The loop learns what the reward asks for, on prompts it never trained on: SmolLM2 (first 2 blocks, real
    weights), an SVF expert (paper form), sampled one-token rollouts, reward +1 when the first token is the one the base
    model ranks second on average, −1 otherwise, normalised per batch (official ``rw_norm``). The held-out score is
    the exact expected reward's probability (p of that token, no sampling noise); it must at least double."""
    import numpy as np

    from spectune.data.records import Record
    from spectune.models import load_model_and_tokenizer
    from spectune.training.reinforce import RLSettings, train_reinforce

    torch.manual_seed(0)
    model, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=2)
    words = ["apple", "river", "stone", "cloud", "music", "garden", "winter", "candle", "bridge", "forest", "silver",
             "ocean", "paper", "mountain", "window", "thunder", "lantern", "meadow", "harbor", "violin"]
    records = [Record(task="toy", id=str(i), instruction=f"Say one word about {w}.", input="", output="", answer="")
               for i, w in enumerate(words)]
    train, held_out = records[:12], records[12:]

    def prompt(r: Record) -> str:
        return f"<|im_start|>user\n{r.instruction}<|im_end|>\n<|im_start|>assistant\n"

    def next_token_probs(rs: list[Record]) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([model(torch.tensor([tok(prompt(r), add_special_tokens=False)["input_ids"]]))
                                .logits[0, -1].float().softmax(-1) for r in rs])

    target = int(next_token_probs(train).mean(0).topk(2).indices[1])

    class FirstTokenTask:
        metric = "p_target"

        def prompts(self, rs: list[Record]) -> list[str]:
            return [prompt(r) for r in rs]

        def rewards(self, rs: list[Record], completions: list[str]) -> list[float]:
            return [1.0 if tok(c, add_special_tokens=False)["input_ids"][:1] == [target] else -1.0
                    for c in completions]

        def validate(self, model, rs, max_new_tokens, batch_size) -> dict:
            return {"n": len(rs), "p_target": float(next_token_probs(rs)[:, target].mean())}

    method = build_method("svf")
    method.attach(model, "CAUSAL_LM")
    before = float(next_token_probs(held_out)[:, target].mean())
    settings = RLSettings(iterations=8, batch_prompts=12, sampling="sample", max_new_tokens=1, eval_every=4,
                          reward_norm=True, lr=1e-2, max_grad_norm=1.0, micro_batch=12, gen_batch=12)
    rewards: list[float] = []
    result = train_reinforce(model, tok, method, train, held_out, FirstTokenTask(), settings,
                             log_event=lambda kind, **v: rewards.append(v["reward_mean"]) if kind == "rl" else None)
    after = float(next_token_probs(held_out)[:, target].mean())
    assert after == pytest.approx(result.best_score) and result.best_iteration in (4, 8)
    assert after >= 2 * before, (before, after, rewards)
    assert np.mean(rewards[len(rewards) // 2:]) > np.mean(rewards[:len(rewards) // 2]), rewards
