# Sourced by scripts/gpu/step_time_gpu.sh and step_time_queue.sh: issue 11's benchmark shape (LLaMA-3-8B block
# shapes, 8 layers, batch 8 x 512, bf16, r 32 on q, k, v, up, down; compiled rows, one profiled step each) and
# run_rows, one benchmarks/step_time.py run on one GPU. Needs SPECTUNE_GIT_COMMIT, OUT, LIMIT set.
SITE=${GPU_SITE:-/tmp/site}
short=${SPECTUNE_GIT_COMMIT:0:7}
mkdir -p "$OUT"
export PYTHONPATH=$SITE:$PWD/src HF_HUB_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 SPECTUNE_GIT_DIRTY=0

SHAPE=(--model llama-shape --layers 8 --hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 --vocab 128256
  --batch 8 --seq 512 --precision bf16 --r 32 --targets q_proj,k_proj,v_proj,up_proj,down_proj --dash-s 8
  --plora-stage 200 --warmup 3 --steps 10 --modes compiled --profile-steps --git-commit "$SPECTUNE_GIT_COMMIT")

run_rows() {  # gpu dropout rows "overrides" name-tag [extra step_time.py args...]
  local gpu=$1 p=$2 rows=$3 set=$4 vtag=$5 rc=0 o; shift 5
  local tag=${p//./} sets=()
  for o in $set; do sets+=(--set "$o"); done
  local raw=$OUT/raw_d$tag$vtag.log
  CUDA_VISIBLE_DEVICES=$gpu timeout "$LIMIT" python3 benchmarks/step_time.py "${SHAPE[@]}" "${sets[@]}" --dropout "$p" \
    --rows "$rows" "$@" --out "$OUT/step_time_llama3_shape_8l_compiled_dropout${tag}${vtag}_$short.json" > "$raw" 2>&1 \
    || rc=$?
  python3 scripts/gpu/strip_progress.py "$raw" > "$OUT/step_time_${short}_d${tag}${vtag}.log" && rm -f "$raw"
  echo "gpu $gpu dropout $p $set: exit $rc"
  return $rc
}
