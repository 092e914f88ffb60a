#!/usr/bin/env bash
# Issue 11: several benchmark runs one after another on one GPU, for a lease that keeps both GPUs of an
# nvidia-h200-x2 busy with different queues (one queue per GPU, started together, detached with setsid so that they
# outlive the device call that starts them; later calls wait and collect). Same shapes as step_time_gpu.sh
# (scripts/gpu/step_time_lib.sh).
#
#   SPECTUNE_GIT_COMMIT=<commit> OUT=<dir> bash scripts/gpu/step_time_queue.sh GPU JOB [JOB ...]
#
# A JOB is either "masked_gemm|TAG|ARGS" (benchmarks/masked_gemm.py ARGS: LoRA's masked input GEMM alone; writes
# masked_gemm_h200_<short>TAG.json and its log) or
# "P|ROWS|SETS|TAG|LIMIT|ENV": benchmarks/step_time.py at dropout P for the comma list ROWS, with the space-separated
# train.* overrides SETS, the output-name tag TAG, at most LIMIT seconds and the space-separated VAR=value settings
# ENV in its environment (e.g. TORCHINDUCTOR_PROLOGUE_FUSION=0), e.g.
#   "0|floor,peft_lora,lora|train.optimizer=adamw_torch_fused|_fusedadamw|300|"
# A failing or timed-out job is reported and the queue goes on; the exit code is 1 if any job failed.
# Writes what step_time_gpu.sh writes for each run, and queue_gpu<GPU>.done at the end.
set -uo pipefail
: "${SPECTUNE_GIT_COMMIT:?set SPECTUNE_GIT_COMMIT to the commit of this tree (the copy has no .git)}"
OUT=${OUT:-/tmp/step_time_out}
LIMIT=540
gpu=$1; shift
source scripts/gpu/step_time_lib.sh
status=0
for job in "$@"; do
  echo "[$(date +%T)] gpu $gpu: $job"
  if [[ $job == masked_gemm* ]]; then
    IFS='|' read -r _ tag args <<< "$job"
    # shellcheck disable=SC2086  # ARGS is a list of words
    CUDA_VISIBLE_DEVICES=$gpu timeout 400 python3 benchmarks/masked_gemm.py $args --git-commit "$SPECTUNE_GIT_COMMIT" \
      --out "$OUT/masked_gemm_h200_$short$tag.json" > "$OUT/masked_gemm_$short$tag.log" 2>&1 || status=1
    continue
  fi
  IFS='|' read -r p rows sets tag limit envs <<< "$job"
  LIMIT=${limit:-540}
  extra=()
  [[ $p == 0.05 && $rows == *plora* ]] && extra=(--profile-unload)
  (for e in $envs; do export "${e?}"; done; run_rows "$gpu" "$p" "$rows" "$sets" "$tag" "${extra[@]}") || status=1
done
echo "[$(date +%T)] gpu $gpu: queue done, status $status" | tee "$OUT/queue_gpu$gpu.done"
exit $status
