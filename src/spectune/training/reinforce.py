"""REINFORCE, Transformer²'s training objective (Sun, Cetin, Tang 2025, §3.2, Table 6): ``train.objective=reinforce``.

Per iteration u = 1 … T (``train.rl.iterations``), with the method's trainable parameters θ (SVF: the vectors z;
LoRA: A and B; any method that needs no Trainer callbacks):

1. B = min(``rl.batch_prompts``, N_train) training prompts x_i, drawn without replacement by a numpy Generator seeded
   with ``seed`` (independent draws per iteration, as the official ``np_random.choice(train_ix, size, replace=False)``);
2. rollouts ŷ_i ~ π_θ(· | x_i): greedy (``rl.sampling=greedy``, the official vLLM temperature 0) or sampled at
   ``rl.temperature``, at most ``rl.max_new_tokens`` tokens, ending at EOS or one of the official stop strings;
3. rewards r_i ∈ {+1, −1} from the task's own check (:func:`spectune.evaluation.t2_scoring.rewards`);
4. the loss, summed over each completion's tokens and averaged over the batch::

       J(θ) = (1/B) Σ_i [ −r_i · Σ_t log π_θ(ŷ_{i,t} | x_i, ŷ_{i,<t})  +  λ · Σ_t KL_t ]

   with λ = ``rl.kl_coef`` and, per completion position t, KL_t = KL(π_θ ‖ π_base) = Σ_v π_θ(v)(log π_θ(v) −
   log π_base(v)) (``rl.kl_form=paper``, the paper's notation) or KL(π_base ‖ π_θ) (``rl.kl_form=official``: the
   official ``F.kl_div(input=log π_θ, target=log π_base, log_target=True, reduction="sum")``). π_base is the same
   model inside :meth:`~spectune.methods.base.Method.base_model_context` (the update switched off), evaluated
   without gradient; with λ = 0 it is never computed;
5. ‖∇_θ J‖ clipped to ``train.max_grad_norm`` (paper 1e-3), one ``torch.optim.Adam`` step at ``train.lr`` (paper 2e-3,
   constant).

The loss is the official one (github:SakanaAI/self-adaptive-llms, commit 03a41ae, ``optim_modules.py``
``Reinforce.step_optimization``: ``log_likelihood = selected_log_probs.sum(-1)``, ``loss = -log_likelihood *
reward + kl_ref_coeff * kl_div``, ``(loss / clipped_batch_size).backward()``): **no length normalisation** — a long
completion weighs more — and the mean over the batch. Its reward options are offered under the same names' meaning
(:func:`shape_rewards`, ``Reinforce.get_rewards``): ``rl.reward_norm`` (official ``rw_norm``: r ← (r − mean r) /
max(std r, 1e-7) over the iteration's batch) and ``rl.reward_clip`` (``rw_clip``: r clipped to [−c, c] when c > 0),
both off by default as there. With ±1 rewards and no normalisation every update of a batch that is mostly wrong
lowers the log-probability of what was generated and nothing pushes back (EOS, never scored, gains: the collapse
measured in docs/methods.md); normalised, the batch's rewards sum to zero. What differs, and why:

- the tokens scored are the tokens generated (up to the stop string, EOS and stop string excluded, as the official
  output text excludes them); the official re-tokenises ``prompt + output`` and slices at the prompt's token count,
  which can merge tokens across the boundary and (Llama-3) adds a second BOS;
- one prompt rendering for rollouts and gradient (:func:`~spectune.data.t2_tasks.build_prompt`; the official MBPP
  gradient prompt has one newline more than its rollout prompt, ``docs/t2-tasks.md``);
- the model stays in eval mode (dropout off), as the official (its model is never put in train mode), so the
  gradient is of the policy that generated;
- evaluation: greedy decoding on the validation split after every ``rl.eval_every`` iterations and after the last
  (official: after updates 1, 11, 21, …); the state with the best validation exact match is kept (strictly better
  replaces it, as the official ``>``; the first of ties stays), checkpointed to ``checkpoints/rl-best`` and saved as
  the run's adapter; the test split is scored once, from that saved state (the official scores the test split at
  every evaluation and reports the number at the best validation score: the same number). The starting state is
  evaluated too (iteration 0 of the curve) and is a candidate only with ``rl.select_start`` (official: never).

Run-folder records: ``rl`` events per iteration and ``rl_valid`` events per evaluation in ``metrics.jsonl``;
``rl_curve.json`` (the validation curve, the chosen iteration; rewritten after every evaluation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from spectune.data.records import Record
from spectune.io import write_json_atomic

#: Task families with a reward function (validated before a run starts, :func:`spectune.config.validate`).
REWARD_FAMILIES: tuple[str, ...] = ("t2", "t2_cls")  # the families reward_task knows
BEST_DIR = Path("checkpoints") / "rl-best"
CURVE_FILE = "rl_curve.json"
KL_FORMS = ("paper", "official")


# --------------------------------------------------------------------------------------------------- settings
@dataclass
class RLSettings:
    """Everything the REINFORCE loop reads (``train.*`` and ``train.rl.*`` of a run config; see
    ``conf/train/default.yaml``). ``micro_batch``: sequences per forward/backward pass (``train.batch_size``);
    ``gen_batch``: prompts per generation batch (``train.eval_batch_size``)."""

    iterations: int = 20
    batch_prompts: int = 16
    sampling: Literal["greedy", "sample"] = "greedy"
    temperature: float = 1.0
    max_new_tokens: int = 32
    kl_coef: float = 0.0
    kl_form: Literal["paper", "official"] = "paper"
    eval_every: int = 5
    select_start: bool = False
    reward_norm: bool = False
    reward_clip: float | None = None
    lr: float = 2e-3
    max_grad_norm: float = 1e-3
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    micro_batch: int = 8
    gen_batch: int = 16
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> RLSettings:
        """The settings of a composed run config (``cfg.train``, ``cfg.train.rl``, ``cfg.seed``)."""
        t, rl = cfg.train, cfg.train.rl
        return cls(iterations=int(rl.iterations), batch_prompts=int(rl.batch_prompts), sampling=rl.sampling,
                   temperature=float(rl.temperature), max_new_tokens=int(rl.max_new_tokens),
                   kl_coef=float(rl.kl_coef), kl_form=rl.kl_form, eval_every=int(rl.eval_every),
                   select_start=bool(rl.select_start), reward_norm=bool(rl.get("reward_norm", False)),
                   reward_clip=None if rl.get("reward_clip") is None else float(rl.reward_clip), lr=float(t.lr),
                   max_grad_norm=float(t.max_grad_norm),
                   adam_beta2=float(t.adam_beta2), weight_decay=float(t.weight_decay), micro_batch=int(t.batch_size),
                   gen_batch=int(t.eval_batch_size), precision=t.precision, seed=int(cfg.seed))


# --------------------------------------------------------------------------------------------------- the task
class T2RewardTask:
    """Transformer²'s tasks: the official prompt, the official ±1 reward, greedy validation by exact match."""

    metric = "exact_match"

    def __init__(self, task: str, tokenizer: Any):
        self.task, self.tokenizer = task, tokenizer

    def prompts(self, records: Sequence[Record]) -> list[str]:
        from spectune.data.t2_tasks import build_prompt

        return [build_prompt(r, self.tokenizer) for r in records]

    def rewards(self, records: Sequence[Record], completions: Sequence[str]) -> list[float]:
        from spectune.evaluation.t2_scoring import rewards

        return rewards(records, completions)

    def validate(self, model: nn.Module, records: Sequence[Record], max_new_tokens: int,
                 batch_size: int) -> dict[str, Any]:
        """Greedy exact match (the selection score, as the official evaluation decodes: greedy, stop strings), the
        mean reward, and the gold answers' bits per byte of ``records`` (a continuous companion for the curve)."""
        from spectune.data.t2_tasks import gold_continuation
        from spectune.evaluation.likelihood import score_gold
        from spectune.evaluation.t2_scoring import check_completions, generate_greedy

        prompts = self.prompts(records)
        completions = generate_greedy(model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size)
        verdicts = check_completions(records, completions)
        gold = score_gold(model, self.tokenizer, prompts, [gold_continuation(r) for r in records],
                          batch_size=batch_size)
        n = len(records)
        return {"n": n, "exact_match": sum(v.correct for v in verdicts) / n,
                "mean_reward": sum(v.reward for v in verdicts) / n,
                "n_no_prediction": sum(v.prediction is None and not v.status for v in verdicts),
                "bits_per_byte": gold.bits_per_byte}


def reward_task(task: str, tokenizer: Any) -> Any:
    """The reward task of ``task`` (a name or alias of :mod:`spectune.data.tasks`), by the task's family.

    Family ``t2``: :class:`T2RewardTask` (the official prompt and ±1 check of the answer); family ``t2_cls``:
    :class:`spectune.adaptation.cls_data.ClassifierRewardTask` (Transformer²'s classification expert, Sun, Cetin, Tang
    2025 §3.2: the first pass's prompt, ±1 for the right ``\\boxed{domain}``, as the official ``tasks/cls.py`` at
    SakanaAI/self-adaptive-llms 03a41ae). Both offer ``prompts``, ``rewards``, ``validate`` and ``metric``. Raises
    ``ValueError`` naming the families that have one.
    """
    from spectune.data.tasks import get_task

    spec = get_task(task)
    if spec.family == "t2":
        return T2RewardTask(spec.name, tokenizer)
    if spec.family == "t2_cls":
        from spectune.adaptation.cls_data import ClassifierRewardTask

        return ClassifierRewardTask(tokenizer)
    raise ValueError(f"Task '{spec.name}' (family {spec.family}) has no reward function; objective=reinforce needs "
                     f"one of the families {list(REWARD_FAMILIES)}.")


# --------------------------------------------------------------------------------------------------- rollouts
@dataclass
class Rollout:
    """One completion: the prompt's token ids, the scored completion ids and the completion text (cut at the first
    stop string, as the reward sees it)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str


def trim_completion(tokenizer: Any, generated: Sequence[int], end_ids: set[int],
                    stop: Sequence[str]) -> tuple[list[int], str]:
    """(scored ids, text) of one generated sequence: ids up to the first EOS / pad id; text = their decoding cut at
    the first stop string; ids = the longest prefix whose decoding is a prefix of that text (the stop string, and a
    token straddling it, are not scored)."""
    from spectune.evaluation.t2_scoring import cut_at_stop

    ids = [int(t) for t in generated]
    for j, t in enumerate(ids):
        if t in end_ids:
            ids = ids[:j]
            break
    full = tokenizer.decode(ids, skip_special_tokens=True)
    text = cut_at_stop(full, stop)
    if text == full:
        return ids, text
    k = len(ids)
    while k > 0:
        k -= 1
        if text.startswith(tokenizer.decode(ids[:k], skip_special_tokens=True)):
            break
    return ids[:k], text


def rollout(model: nn.Module, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16,
            sampling: str = "greedy", temperature: float = 1.0, seed: int | None = None) -> list[Rollout]:
    """Generate one completion per prompt (full prompt texts, tokenised without added special tokens), batched with
    left padding and sorted by length; ``sampling`` "greedy" or "sample" (pure sampling at ``temperature``, seeded
    by ``seed`` through torch's global generator). Stops at EOS or an official stop string (Transformer²)."""
    from spectune.data.t2_tasks import STOP_STRINGS
    from spectune.evaluation.generation import _padding, protocol_generation_config
    from spectune.evaluation.t2_scoring import generate_batches

    if sampling not in ("greedy", "sample"):
        raise ValueError(f"rl.sampling='{sampling}' is not known; use greedy or sample.")
    prompts = list(prompts)
    out: list[Rollout | None] = [None] * len(prompts)
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    with _padding(tokenizer, "left"):
        config = protocol_generation_config(model, tokenizer, num_beams=1, max_new_tokens=max_new_tokens)
        config.stop_strings = list(STOP_STRINGS)
        if sampling == "sample":
            config.do_sample, config.temperature, config.top_k, config.top_p = True, float(temperature), 0, 1.0
        eos = config.eos_token_id
        end_ids = {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None}
        if tokenizer.pad_token_id is not None:
            end_ids.add(int(tokenizer.pad_token_id))
        ids_all = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        try:
            for idx, new in generate_batches(model, tokenizer, prompts, config, batch_size):
                for i, g in zip(idx, new.tolist(), strict=True):
                    completion, text = trim_completion(tokenizer, g, end_ids, STOP_STRINGS)
                    out[i] = Rollout(list(ids_all[i]), completion, text)
        finally:
            model.train(was_training)
    return [r for r in out if r is not None]


# --------------------------------------------------------------------------------------------------- the loss
@dataclass
class LossParts:
    """The numbers of one batch's loss: ``loss`` = J, ``pg`` = (1/B) Σ_i −r_i Σ_t log π_θ, ``kl`` = (1/B) Σ_i Σ_t
    KL_t (None when λ = 0: not computed), ``log_prob`` = mean over completions of Σ_t log π_θ, ``tokens`` = scored
    completion tokens, ``base_passes`` = forward passes of π_base."""

    loss: float
    pg: float
    kl: float | None
    log_prob: float
    tokens: int
    base_passes: int


def _padded(rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Left-padded prompt+completion ids, attention mask, position ids (counted over real tokens) and the mask of
    each row's completion within the last C positions (C = the longest completion)."""
    T = max(len(p) + len(c) for p, c in rows)
    C = max(len(c) for _, c in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    cmask = torch.zeros((len(rows), C), dtype=torch.bool)
    for i, (p, c) in enumerate(rows):
        seq = [*p, *c]
        ids[i, T - len(seq):] = torch.tensor(seq, dtype=torch.long)
        attn[i, T - len(seq):] = 1
        cmask[i, C - len(c):] = True
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), attn.to(device), pos.to(device), cmask.to(device), C


def _completion_log_softmax(model: nn.Module, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor,
                            C: int) -> torch.Tensor:
    """log π(· | h_t) at the C positions that predict the last C tokens (B × C × V, at least float32)."""
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=C + 1, use_cache=False)
    logits = out.logits[:, -(C + 1):-1]
    return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def policy_gradient_step(model: nn.Module, rollouts: Sequence[Rollout], rewards: Sequence[float], *,
                         kl_coef: float = 0.0, kl_form: str = "paper",
                         base_context: Callable[[], AbstractContextManager[Any]] | None = None,
                         micro_batch: int = 8, pad_id: int = 0,
                         autocast_dtype: torch.dtype | None = None) -> LossParts:
    """Accumulate ∇_θ J into the trainable parameters' ``.grad`` (the caller zeroes, clips and steps), with

        J(θ) = (1/B) Σ_i [ −r_i Σ_t log π_θ(ŷ_{i,t} | ·) + λ Σ_t KL_t ],

    B = ``len(rollouts)``, λ = ``kl_coef``, KL_t per ``kl_form`` (module doc), π_base = the model inside
    ``base_context()`` without gradient (needed, and called, only when λ > 0). Sums over completion tokens, no
    length normalisation (the official). Sequences run ``micro_batch`` at a time (sorted by length), left-padded
    with explicit position ids, so each one is scored as if alone.
    """
    if len(rollouts) != len(rewards):
        raise ValueError(f"{len(rollouts)} rollouts but {len(rewards)} rewards.")
    if kl_form not in KL_FORMS:
        raise ValueError(f"rl.kl_form='{kl_form}' is not known; use one of {list(KL_FORMS)}.")
    if kl_coef > 0 and base_context is None:
        raise ValueError("kl_coef > 0 needs base_context (the method's base_model_context) for π_base.")
    B = len(rollouts)
    if B == 0:
        raise ValueError("No rollouts to learn from.")
    device = next(p for p in model.parameters()).device
    order = sorted(range(B), key=lambda i: len(rollouts[i].prompt_ids) + len(rollouts[i].completion_ids))
    def amp() -> AbstractContextManager[Any]:
        return torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()

    loss_sum = pg_sum = kl_sum = lp_sum = 0.0
    tokens = base_passes = 0
    for start in range(0, B, micro_batch):
        idx = [i for i in order[start:start + micro_batch] if rollouts[i].completion_ids]
        if not idx:  # empty completions score nothing (Σ over no tokens = 0)
            continue
        ids, attn, pos, cmask, C = _padded([(rollouts[i].prompt_ids, rollouts[i].completion_ids) for i in idx],
                                           pad_id, device)
        targets = ids[:, -C:]
        base_logp = None
        if kl_coef > 0:
            with torch.no_grad(), base_context(), amp():
                base_logp = _completion_log_softmax(model, ids, attn, pos, C)
            base_passes += 1
        with amp():
            logp = _completion_log_softmax(model, ids, attn, pos, C)
        tok_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).masked_fill(~cmask, 0.0)
        seq_logp = tok_logp.sum(-1)
        r = torch.tensor([float(rewards[i]) for i in idx], dtype=seq_logp.dtype, device=device)
        pg = -(r * seq_logp)
        loss = pg.sum()
        if base_logp is not None:
            if kl_form == "paper":  # KL(π_θ ‖ π_base)
                kl_tok = (logp.exp() * (logp - base_logp)).sum(-1)
            else:  # KL(π_base ‖ π_θ), the official F.kl_div(input=log π_θ, target=log π_base, log_target=True)
                kl_tok = (base_logp.exp() * (base_logp - logp)).sum(-1)
            kl_seq = kl_tok.masked_fill(~cmask, 0.0).sum(-1)
            loss = loss + kl_coef * kl_seq.sum()
            kl_sum += float(kl_seq.detach().sum())
        (loss / B).backward()
        loss_sum += float(loss.detach())
        pg_sum += float(pg.detach().sum())
        lp_sum += float(seq_logp.detach().sum())
        tokens += int(cmask.sum())
    return LossParts(loss=loss_sum / B, pg=pg_sum / B, kl=kl_sum / B if kl_coef > 0 else None, log_prob=lp_sum / B,
                     tokens=tokens, base_passes=base_passes)


# --------------------------------------------------------------------------------------------------- the loop
@dataclass
class RLResult:
    """What a REINFORCE run did: iterations run, the loss per iteration, the validation curve and the chosen state
    (``best_iteration`` None when no candidate was evaluated)."""

    iterations: int
    losses: list[float] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_iteration: int | None = None
    best_score: float | None = None


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def train_reinforce(model: nn.Module, tokenizer: Any, method: Any, train: Sequence[Record],
                    validation: Sequence[Record], task: T2RewardTask, settings: RLSettings,
                    run_dir: Path | None = None, log_event: Callable[..., None] | None = None) -> RLResult:
    """Train ``model`` (the method attached) by REINFORCE on ``train``; leave it holding the state with the best
    validation score. ``run_dir``: where the best state (``checkpoints/rl-best``, through ``method.save``) and
    ``rl_curve.json`` go (None: nowhere). ``log_event(kind, step=..., **values)``: the run's event logger."""
    if not train:
        raise ValueError("objective=reinforce needs training prompts (task.n_train > 0).")
    if not validation:
        raise ValueError("objective=reinforce keeps the state with the best validation score: set task.n_valid > 0.")
    s = settings
    log = log_event or (lambda *a, **k: None)
    device = torch.device("cuda") if torch.cuda.is_available() else next(model.parameters()).device
    model.to(device)
    model.eval()  # dropout off throughout, as the official: the gradient is of the policy that generated
    params = _trainable(model)
    if not params:
        raise ValueError("The model has no trainable parameters: attach the method first.")

    def base_context() -> AbstractContextManager[Any]:
        return method.base_model_context(model)

    if s.kl_coef > 0:
        from spectune.errors import ConfigError

        try:
            with base_context():
                pass
        except NotImplementedError as err:
            raise ConfigError(f"train.rl.kl_coef={s.kl_coef} needs the base policy, but {err} Set "
                              "train.rl.kl_coef=0.") from None
    optimizer = torch.optim.Adam(list(params.values()), lr=s.lr, betas=(0.9, s.adam_beta2),
                                 weight_decay=s.weight_decay)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    amp_dtype = torch.bfloat16 if s.precision == "bf16" else None
    prompts = task.prompts(train)
    batches = iter_batches(len(train), s.batch_prompts, s.seed)
    result = RLResult(iterations=s.iterations)
    best_state: dict[str, torch.Tensor] | None = None

    def evaluate(u: int) -> None:
        nonlocal best_state
        t0 = time.perf_counter()
        metrics = task.validate(model, validation, s.max_new_tokens, s.gen_batch)
        score = float(metrics[task.metric])
        candidate = u > 0 or s.select_start
        better = candidate and (result.best_score is None or score > result.best_score)
        if better:
            result.best_iteration, result.best_score = u, score
            best_state = {n: p.detach().to("cpu", copy=True) for n, p in params.items()}
            if run_dir is not None:
                method.save(model, run_dir / BEST_DIR)
                write_json_atomic(run_dir / BEST_DIR / "rl_best.json", {"iteration": u, task.metric: score})
        entry = {"iteration": u, **metrics, "candidate": candidate, "seconds": round(time.perf_counter() - t0, 2)}
        result.curve.append(entry)
        log("rl_valid", step=u, **{k: v for k, v in entry.items() if k != "iteration"}, best=better,
            best_iteration=result.best_iteration)
        if run_dir is not None:
            _write_curve(run_dir, result, s, task.metric, len(validation))

    evaluate(0)
    for u in range(1, s.iterations + 1):
        t0 = time.perf_counter()
        idx = next(batches)
        records = [train[i] for i in idx]
        rolls = rollout(model, tokenizer, [prompts[i] for i in idx], s.max_new_tokens, batch_size=s.gen_batch,
                        sampling=s.sampling, temperature=s.temperature,
                        seed=s.seed * 1_000_003 + u if s.sampling == "sample" else None)
        rewards = task.rewards(records, [r.text for r in rolls])
        shaped = shape_rewards(rewards, norm=s.reward_norm, clip=s.reward_clip)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        parts = policy_gradient_step(model, rolls, shaped, kl_coef=s.kl_coef, kl_form=s.kl_form,
                                     base_context=base_context if s.kl_coef > 0 else None,
                                     micro_batch=s.micro_batch, pad_id=pad_id, autocast_dtype=amp_dtype)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), s.max_grad_norm))
        optimizer.step()
        result.losses.append(parts.loss)
        log("rl", step=u, loss=parts.loss, pg=parts.pg, kl=parts.kl, reward_mean=float(np.mean(rewards)),
            correct=int(sum(r > 0 for r in rewards)), prompts=len(rewards), log_prob_mean=parts.log_prob,
            completion_tokens_mean=parts.tokens / len(rolls), grad_norm=grad_norm, lr=s.lr,
            rollout_seconds=round(t1 - t0, 2), update_seconds=round(time.perf_counter() - t1, 2))
        if u % s.eval_every == 0 or u == s.iterations:
            evaluate(u)
    if best_state is not None:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(best_state[n].to(device=p.device, dtype=p.dtype))
    if run_dir is not None:
        _write_curve(run_dir, result, s, task.metric, len(validation), finished=True)
    return result


def _write_curve(run_dir: Path, result: RLResult, settings: RLSettings, metric: str, n_valid: int,
                 finished: bool = False) -> None:
    write_json_atomic(run_dir / CURVE_FILE, {
        "metric": metric, "split": "validation", "n": n_valid, "higher_is_better": True,
        "selection": "the state with the best validation score (strictly better replaces; first of ties kept)"
                     + ("; the starting state is a candidate" if settings.select_start else
                        "; the starting state (iteration 0) is not a candidate (official)"),
        "best_iteration": result.best_iteration, "best_score": result.best_score,
        "iterations": result.iterations, "finished": finished, "evaluations": result.curve,
        "settings": asdict(settings),
    })


def shape_rewards(rewards: Sequence[float], *, norm: bool = False, clip: float | None = None) -> list[float]:
    """The rewards the policy gradient uses, as the official ``Reinforce.get_rewards`` shapes them: with ``norm``,
    r ← (r − mean r) / max(std r, 1e-7) over the batch (population std, ``np.std``); then, with ``clip`` > 0,
    r ← clip(r, −clip, clip). Neither by default (official ``rw_norm: false``, ``rw_clip: null``)."""
    r = np.asarray(rewards, dtype=np.float64)
    if norm:
        r = (r - r.mean()) / max(float(r.std()), 1e-7)
    if clip is not None and clip > 0:
        r = np.clip(r, -clip, clip)
    return [float(x) for x in r]


def iter_batches(n: int, batch: int, seed: int) -> Iterator[np.ndarray]:
    """The prompt indices of each iteration, as :func:`train_reinforce` draws them (for inspection and tests)."""
    rng = np.random.default_rng(seed)
    size = min(batch, n)
    while True:
        yield rng.choice(n, size=size, replace=False)
