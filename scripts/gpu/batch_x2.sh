#!/usr/bin/env bash
# One 2 x H200 lease for the measurements of issues 9, 10, 11 and 12, from ONE commit shipped as `git archive`, in
# back-to-back calls while the machine is warm (~30 s between calls):
#
#   call 1, carry [".gpu1"]:                  bash scripts/gpu/stage1.sh .gpu1
#   call 2, carry [".gpu2a"]:                 bash scripts/gpu/stage1.sh .gpu2a
#   call 3, carry [".gpu2", ".gpu_src.tgz"]:  bash scripts/gpu/reinforce_gpu.sh bootstrap <commit>
#   call 4, carry [".gpu_src.tgz"]:           bash scripts/gpu/batch_x2.sh main <commit>
#   call 5, carry [".gpu_src.tgz", ".gpu_ds"]: bash scripts/gpu/batch_x2.sh deepspeed <commit>
#
# main: at once, on separate GPUs of the machine
#   GPU 1: scripts/gpu/reinforce_gpu.sh run with RL_SET=followup ITERS=15 (issue 9: base rows, SVF official form and
#          LoRA with reward_norm, seeds 0-2, the test split scored) -> $OUT/rl/
#   GPU 0, one after another (timings of one process alone on its GPU; the REINFORCE processes share the host's
#          32 cores): benchmarks/eval_speed.py (issue 10), then benchmarks/step_time.py compiled rows, then eager rows
#          (issue 11; LLaMA-3-8B block shapes cut to 8 layers, bf16, batch 8 x 512, r 32 on q,k,v,up,down, dropout
#          0.05), each stopped at the call's deadline -> $OUT/bench.tgz, $OUT/bench.log
# deepspeed: scripts/gpu/deepspeed_2gpu.sh (issue 12) with METHODS / STAGES / LAYERS / STEPS from the environment.
# Environment: DEADLINE=570 (s after the call started, main), OUT.
set -uo pipefail
MODE=${1:?usage: $0 main <commit> | deepspeed <commit>}
SHA=${2:?commit}
REPO=$(pwd -P)
OUT=${OUT:-/tmp/batch_out}
SRC=/tmp/src
T0=$(date +%s)
mkdir -p "$OUT"
embedded=$(python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.next(); print(t.pax_headers.get("comment"))' \
  "$REPO/.gpu_src.tgz")
[[ "$embedded" == "$SHA" && -d "$SRC/src/spectune" && -f /tmp/site/.bootstrap_complete ]] \
  || { echo "ERROR: archive $embedded (expected $SHA), $SRC or /tmp/site missing: run the bootstrap call first"; exit 1; }
export PYTHONPATH=/tmp/site:$SRC/src:$SRC HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
  SPECTUNE_CACHE=/tmp/spectune_cache PYTHONUNBUFFERED=1 SPECTUNE_GIT_COMMIT=$SHA SPECTUNE_GIT_DIRTY=0

main() {
  local end=$((T0 + ${DEADLINE:-570})) B=/tmp/bench_out short=${SHA:0:7}
  mkdir -p "$OUT/rl" "$B"
  ( CUDA_VISIBLE_DEVICES=1 RL_SET=followup ITERS=${ITERS:-15} BUDGET=$(( ${DEADLINE:-570} - 15 )) OUT=$OUT/rl \
      bash "$SRC/scripts/gpu/reinforce_gpu.sh" run "$SHA" > /dev/null 2>&1 ) &
  local rl=$!
  cd "$SRC" || return 1
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  left() { echo $((end - $(date +%s))); }
  echo "== eval_speed on GPU 0 ($(left) s left)"
  CUDA_VISIBLE_DEVICES=0 timeout "$(( $(left) < 220 ? $(left) : 220 ))" python3 benchmarks/eval_speed.py --device cuda \
    --task arc_e --items 2000 --reference-items 500 --gen-items 100 --git-commit "$SHA" \
    --out "$B/eval_speed_arc_e_h200_$short.json" 2>&1 | grep -v "it/s\]\|s/it\]\|request/s\]\|prompt/s\]"
  echo "== step_time compiled on GPU 0 ($(left) s left)"
  local ST=(--model llama-shape --layers 8 --hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 --vocab 128256
            --batch 8 --seq 512 --precision bf16 --r 32 --dropout 0.05 --targets q_proj,k_proj,v_proj,up_proj,down_proj
            --dash-s 8 --plora-stage 200 --warmup 3 --steps 10 --git-commit "$SHA")
  CUDA_VISIBLE_DEVICES=0 timeout "$(left)" python3 benchmarks/step_time.py "${ST[@]}" --modes compiled \
    --out "$B/step_time_llama3_shape_8l_compiled_$short.json" 2>&1 | grep -v "it/s\]\|s/it\]"
  echo "== step_time eager on GPU 0 ($(left) s left)"
  (( $(left) > 60 )) && CUDA_VISIBLE_DEVICES=0 timeout "$(left)" python3 benchmarks/step_time.py "${ST[@]}" \
    --modes eager --out "$B/step_time_llama3_shape_8l_eager_$short.json" 2>&1 | grep -v "it/s\]\|s/it\]"
  echo "== benchmarks done after $(( $(date +%s) - T0 )) s; waiting for REINFORCE"
  wait "$rl"
  echo "== REINFORCE done after $(( $(date +%s) - T0 )) s"
  tail -45 "$OUT/rl/rl_gpu.log"
  tar czf "$OUT/bench.tgz" -C "$B" .
  ls -la "$OUT" "$OUT/rl" "$B"
}

deepspeed() {
  cd "$SRC" || return 1
  rm -rf .gpu_ds && cp -r "$REPO/.gpu_ds" .gpu_ds || return 1
  OUT=$OUT bash scripts/gpu/deepspeed_2gpu.sh
}

case "$MODE" in
  main) main 2>&1 | tee "$OUT/bench.log" ;;
  deepspeed) deepspeed ;;
  *) echo "usage: $0 main <commit> | deepspeed <commit>" >&2; exit 2 ;;
esac
