"""Entry point: Transformer²'s two-pass inference (Sun, Cetin, Tang 2025; docs/adapt.md).

    python -m spectune.adapt strategy=prompt|cls_expert|few_shot experts=[path1,path2,...] task=t2/<task> model=<model>

The first pass picks an expert per query (``prompt``: the model classifies the query with the official prompt;
``cls_expert``: a classification expert does) or mixes them for the task (``few_shot``: z' = Σ_k α_k z_k with α
searched by CEM on a few train examples); the second pass answers the task's test items. One result JSON is
written per call under ``out_dir`` (temporary file, then a link that never replaces an existing file) with the
score, gold bits per byte, the first pass's share of the inference time, the CEM search time, and provenance
(commit, device, seed, expert paths and hashes, the resolved config). Options: ``conf/adapt.yaml``.

Bad input (unknown options, a missing or incompatible expert, an expert of another base without
``allow_other_base=true``, more shots than train examples, ...) is one message on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from spectune.cli import info_only, unwritable_folder
from spectune.config import register_resolvers, scrub_secrets

register_resolvers()
PROG = "spectune.adapt"
_STARTED: list[bool] = []  # set once main() runs: a Hydra exit before it is a composition (override) error
RESULT_FORMAT = "spectune-adapt-result/1"

#: What this implementation does differently from the official code (SakanaAI/self-adaptive-llms @ 03a41ae), on
#: purpose; written into every result (docs/adapt.md has the file and line of each).
DEVIATIONS = (
    "'other' (and a domain without an expert) answers with the base weights; the official prompt-based evaluation "
    "answered it with whichever expert was loaded last (utils.py eval_model_experts_prompt_based, "
    "cfgs/mode/eval.yaml other: null).",
    "The classification expert's data come from the experts' train/validation splits only; the official ClsTask "
    "used GSM8K test and ARC-Challenge test items (tasks/cls.py).",
    "Few-shot examples are drawn from the target task's train split and never scored; the official FewShotTask drew "
    "them from the test (transfer) split and scored the whole split, shots included (tasks/base.py FewShotTask).",
    "Mixtures mix each expert's z after its own mapping (sigmoid(p)*max_mult for official-form experts), as single "
    "experts apply it; the official WeightedCombination mixed the raw p and skipped the sigmoid "
    "(policy/weighted_combination.py get_mask).",
    "The first pass uses the model's own chat template without a pre-fill for every task; the official one used the "
    "task's template (ARC: pre-filled 'Let's think step by step'; code: the @@ Instruction format).",
)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _device(choice: str) -> Any:
    import torch

    from spectune.adaptation.settings import AdaptError

    if choice == "cuda" and not torch.cuda.is_available():
        raise AdaptError("device=cuda but no CUDA device is available; use device=auto or device=cpu.")
    return torch.device("cuda" if choice in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def result_path(out_dir: str | Path, model: str, task: str, strategy: str, seed: int) -> Path:
    """The folder and name stem of a result: ``<out_dir>/<model>/<task>/<strategy>/result-seed<k>-<UTC time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path(out_dir) / model / task / strategy / f"result-seed{seed}-{stamp}"


def write_new_json(stem: Path, obj: Any) -> Path:
    """Write ``obj`` to ``<stem>.json`` (or ``<stem>-1.json``, ``-2``… when taken): a temporary file in the folder,
    flushed, then hard-linked to the final name, which fails rather than replaces an existing file."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=".tmp", dir=stem.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=1, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        for n in range(1000):
            final = stem.parent / (f"{stem.name}.json" if n == 0 else f"{stem.name}-{n}.json")
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
        raise FileExistsError(f"{stem}.json and 999 numbered variants exist already.")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(container: dict[str, Any], svd_cache: Any = None) -> tuple[Path, dict[str, Any]]:
    """Check the options, load experts, data and model, run the strategy, write the result: (path, result).

    ``container``: the resolved ``conf/adapt.yaml`` as a plain dict (``hydra`` key removed). Raises
    :class:`~spectune.errors.UserError` for bad input.
    """
    from spectune.adaptation.options import check_adapt, settings_from
    from spectune.adaptation.settings import AdaptError
    from spectune.adaptation.sources import check_roles

    opts = check_adapt(container)  # before anything heavy is imported or loaded
    settings = settings_from(opts)
    # A missing path, a run of another method, a classifier among the task experts or a cls_expert that is a task
    # expert are refused before anything heavy loads; the classifier's trained domains go into the provenance.
    cls_domains = check_roles(list(opts.experts), opts.cls_expert)

    from spectune.adaptation.experts import ExpertModel, load_expert, load_experts
    from spectune.adaptation.two_pass import run_dispatch, run_few_shot
    from spectune.data.t2_tasks import load_t2
    from spectune.models import load_model_and_tokenizer
    from spectune.training.run_folder import environment

    device = _device(opts.device)
    experts = load_experts(opts.experts, opts.domains)
    classifier = load_expert(opts.cls_expert) if opts.strategy == "cls_expert" else None
    t = opts.task
    train, _, test, data_meta = load_t2(t.name, t.source, t.n_train, getattr(t, "n_valid", None), t.n_test, opts.seed)
    if not test:
        raise AdaptError(f"task={t.name} has no test items (task.n_test={t.n_test}).")
    m = opts.model
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(m.name_or_path, "causal_lm", dtype=m.dtype, num_layers=m.num_layers,
                                          revision=m.revision)
    model.eval()
    em = ExpertModel(model, experts, [classifier] if classifier is not None else [],
                     allow_other_base=opts.allow_other_base, base_weights=opts.base_weights, svd_cache=svd_cache)
    em.to(device)
    load_seconds = time.perf_counter() - t0
    if opts.strategy == "few_shot":
        block = run_few_shot(em, tok, train, test, settings, seed=opts.seed)
    else:
        block = run_dispatch(em, tok, test, settings, classifier=classifier)
    env = environment()
    result = {
        "format": RESULT_FORMAT,
        **{k: block[k] for k in ("strategy", "task", "score", "timing")},
        "model": {"name": m.name, "name_or_path": m.name_or_path, "dtype": m.dtype, "num_layers": m.num_layers},
        **{k: v for k, v in block.items() if k not in ("strategy", "task", "score", "timing", "items")},
        "experts": [e.record() for e in experts],
        "transferred_experts": em.transferred,
        "provenance": {"commit": env["git"], "device": {**env["device"], "used": str(device)}, "seed": opts.seed,
                       "expert_paths": list(opts.experts), "cls_expert": opts.cls_expert,
                       "cls_expert_domains": cls_domains,
                       "allow_other_base": opts.allow_other_base, "base_weights": opts.base_weights,
                       "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "load_seconds": load_seconds, "packages": env["packages"], "python": env["python"],
                       "data": {"source": t.source, "train_indices": data_meta["train_indices"],
                                "test_indices": data_meta["test_indices"], "origin": data_meta["origin"]},
                       "config": scrub_secrets(container)},
        "deviations_from_official": list(DEVIATIONS),
        "items": block["items"],
    }
    path = write_new_json(result_path(opts.out_dir, m.name, t.name, opts.strategy, opts.seed), result)
    return path, result


def summary_line(path: Path, result: dict[str, Any]) -> str:
    """One console line: strategy, task, score, bits per byte, first-pass share, CEM time, the file."""
    s, tm = result["score"], result["timing"]
    bpb = f", gold bits/byte {s['bits_per_byte']:.3f}" if "bits_per_byte" in s else ""
    share = tm.get("first_pass_share_of_total")
    cem = f", CEM search {tm['cem_search_seconds']:.1f} s" if "cem_search_seconds" in tm else ""
    return (f"{result['strategy']} on {result['task']}: {s['metric']} {s['exact_match']:.4f} (n={s['n']}){bpb}; "
            f"first pass {tm['first_pass_seconds']:.2f} s = {100 * (share or 0):.1f}% of inference{cem} -> {path}")


@hydra.main(config_path="../../conf", config_name="adapt", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from spectune.errors import UserError

    _STARTED.append(True)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that cannot resolve
        _error(f"the config does not resolve: {err}")
        raise SystemExit(2) from None
    container.pop("hydra", None)
    try:
        path, result = run(container)
    except UserError as err:
        _error(str(err))
        raise SystemExit(2) from None
    print(summary_line(path, result), flush=True)


def cli() -> int:
    """Run :func:`main` (one result per call; no sweeps)."""
    args = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        _error("spectune.adapt runs one strategy per call; drop -m/--multirun and call it once per setting.")
        return 2
    if not info_only(args):
        problem = unwritable_folder(args, "out_dir", "runs/adapt")
        if problem:
            _error(problem)
            return 2
    try:
        main()
    except SystemExit as exc:
        # Hydra reports an override it cannot compose (unknown key, unknown group option) itself and exits 1; that
        # is bad input too.
        if exc.code == 1 and not _STARTED:
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(cli())
