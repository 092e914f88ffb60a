#!/usr/bin/env bash
# LoRA dropout's packed keep masks on the GPU (issue 11; spectune.methods.dropout_bits): the kernel's tests on CUDA
# (bit for bit against the tests' Python Philox4x32-10, compiled and through Triton's CPU interpreter; DropoutMatmul's
# gradients against its own mask, eager and compiled) and the timing of one mask draw against torch.native_dropout.
#
#   Device call, from the repository root after scripts/gpu/bootstrap.sh (its /tmp/site), carrying .gpu_pt (pytest and
#   its four dependencies as wheels, git-ignored: pip download --no-deps -d .gpu_pt pytest pluggy iniconfig packaging
#   pygments):
#     SPECTUNE_GIT_COMMIT=<commit> GPU=1 bash scripts/gpu/dropout_bits_gpu.sh        (OUT=$OUT: results land there)
# Writes $OUT/dropout_bits_pytest_<short>.log and $OUT/dropout_bits_h200_<short>.json; exit 1 if a test failed.
set -euo pipefail
: "${SPECTUNE_GIT_COMMIT:?set SPECTUNE_GIT_COMMIT to the commit of this tree (the copy has no .git)}"
OUT=${OUT:-/tmp/dropout_bits_out}
SITE=${GPU_SITE:-/tmp/site}
GPU=${GPU:-0}
short=${SPECTUNE_GIT_COMMIT:0:7}
mkdir -p "$OUT" /tmp/pt_site
python3 -m pip install -q --target /tmp/pt_site --no-deps --no-index .gpu_pt/*.whl
export PYTHONPATH=$SITE:$PWD/src:/tmp/pt_site HF_HUB_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 SPECTUNE_GIT_DIRTY=0
status=0
# PYTEST_K: a -k expression, e.g. PYTEST_K=cuda for the CUDA tests alone (the interpreter's tests load the host's CPUs)
CUDA_VISIBLE_DEVICES=$GPU python3 -m pytest -q -p no:cacheprovider -rs ${PYTEST_K:+-k "$PYTEST_K"} \
  tests/methods/test_dropout_bits.py tests/methods/test_lora_fused.py \
  > "$OUT/dropout_bits_pytest_$short.log" 2>&1 || status=1
tail -n 8 "$OUT/dropout_bits_pytest_$short.log"
CUDA_VISIBLE_DEVICES=$GPU python3 benchmarks/dropout_bits.py --git-commit "$SPECTUNE_GIT_COMMIT" \
  --out "$OUT/dropout_bits_h200_$short.json" || status=1
exit $status
