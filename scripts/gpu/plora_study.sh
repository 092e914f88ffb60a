#!/usr/bin/env bash
# PeriodicLoRA smoke study on the GPU machine, after scripts/gpu/bootstrap.sh: the sweeps of
# `make reproduce-plora SEEDS=1` (base-model scores first, full FT last) with the machine's python3, stopped after
# BUDGET seconds; then the small run files (the archive-runs set) packed into $OUT/plora_runs.tgz, from which
# `python -m experiments.plora_study report` builds the table and figure here.
# Run (device call): SPECTUNE_GIT_COMMIT=<commit> bash scripts/gpu/plora_study.sh
set -euo pipefail
export PYTHONPATH=/tmp/site:$PWD/src HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
  SPECTUNE_CACHE=${SPECTUNE_CACHE:-/tmp/spectune_cache} PYTHONUNBUFFERED=1
: "${SPECTUNE_GIT_COMMIT:?set SPECTUNE_GIT_COMMIT to the commit of this tree (the copy has no .git)}"
SEEDS=${SEEDS:-0}
BUDGET=${BUDGET:-500}
OUT=${OUT:-/tmp/plora_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "commit $SPECTUNE_GIT_COMMIT seeds $SEEDS budget ${BUDGET}s"
T="python3 -m spectune.train -m experiment=plora_smoke logger=disabled seed=$SEEDS"
start=$(date +%s)
status=0
timeout "$BUDGET" bash -c "python3 -m spectune.training.base_model --experiment plora_smoke --runs runs/plora \
  && $T method=lora method.r=1,8 \
  && $T method=plora method.r=1,8 method.momentum=0.0,0.1 method.unload_every=8 \
  && $T method=full" || status=$?
echo "sweeps ended with status $status after $(( $(date +%s) - start )) s"
find runs/plora \( -name summary.json -o -name config.yaml -o -name eval_results.json -o -name data_indices.json \
  -o -name environment.json -o -name metrics.jsonl -o -name update_rank.json -o -name method_record.json \) \
  -not -path '*/.hydra/*' | tar czf "$OUT/plora_runs.tgz" -T -
ls -la "$OUT"
