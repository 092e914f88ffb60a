#!/usr/bin/env bash
# Issue 11's step-time table on the GPU: benchmarks/step_time.py's compiled rows on LLaMA-3-8B's block shapes (8 layers,
# batch 8 x 512, bf16, r 32 on q, k, v, up, down), with dropout 0.05 (the seeds' setting: every row, PLoRA's unload
# profiled) on GPU 0 and dropout 0 (the LoRA rows without masks) on GPU 1 at the same time, each GPU alone with its
# run; both with --profile-steps (one step of every row under torch.profiler: device time by kernel category).
#
#   Device call (kind nvidia-h200-x2; one GPU runs them one after the other), from the repository root after
#   scripts/gpu/bootstrap.sh (its /tmp/site on PYTHONPATH):
#     SPECTUNE_GIT_COMMIT=<commit> bash scripts/gpu/step_time_gpu.sh        (OUT=$OUT: results land there)
#
# At 8b3f2aa both runs took ~520 s: each row compiles for 20-45 s and LoRA-Dash's cold switch takes ~42 s, so five
# dropout-0 rows did not fit LIMIT=520; trim ROWS0/ROWS005 to what one call needs.
# Variants: SET="train.optimizer=adamw_torch_fused" TAG=_fusedadamw (or train.compile_mode=reduce-overhead) run
# every row with that recipe override (step_time.py --set), the floor's included. The second GPU's run takes SET1,
# TAG1 and P1 (its dropout, default 0) when given, so two variants of one dropout can run side by side, e.g.
#   SET=train.optimizer=adamw_torch_fused TAG=_fusedadamw SET1=train.compile_mode=reduce-overhead TAG1=_cudagraphs P1=0.05
# Writes $OUT/step_time_llama3_shape_8l_compiled_dropout<p><TAG>_<short>.{json,md} and step_time_<short>_d<p><TAG>.log
# (progress bars removed). Then here: copy the JSON/md to benchmarks/results/, the logs to results/gpu/, and commit.
set -euo pipefail
: "${SPECTUNE_GIT_COMMIT:?set SPECTUNE_GIT_COMMIT to the commit of this tree (the copy has no .git)}"
OUT=${OUT:-/tmp/step_time_out}
LIMIT=${LIMIT:-540}          # seconds per run (a device call is at most 600)
SET=${SET:-}                 # train.* overrides for every row (step_time.py --set), e.g. "train.optimizer=adamw_torch_fused"
TAG=${TAG:-}                 # appended to the output names, e.g. _fusedadamw
SET1=${SET1-$SET}            # the second run's overrides, name tag and dropout
TAG1=${TAG1-$TAG}
P1=${P1:-0}
ROWS005=${ROWS005:-floor,peft_lora,lora,lora_dash,plora,svf}
ROWS0=${ROWS0-floor,peft_lora,lora,lora_dash,plora}  # the second run's rows; ROWS0= (empty): no second run
source scripts/gpu/step_time_lib.sh
ngpu=$(nvidia-smi -L | wc -l)
second=$(( ngpu >= 2 ? 1 : 0 ))

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.csv"
run_rows 0 0.05 "$ROWS005" "$SET" "$TAG" --profile-unload &
a=$!
if [[ -z $ROWS0 ]]; then
  b=$a
elif (( second )); then
  run_rows 1 "$P1" "$ROWS0" "$SET1" "$TAG1" &
  b=$!
else
  wait $a || true
  run_rows 0 "$P1" "$ROWS0" "$SET1" "$TAG1" &
  b=$!
fi
status=0
wait $a || status=1
[[ $b == "$a" ]] || wait $b || status=1
tail -n 30 "$OUT"/step_time_"${short}"_d*.log
exit $status
