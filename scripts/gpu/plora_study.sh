#!/usr/bin/env bash
# PeriodicLoRA smoke study on the GPU machine, after scripts/gpu/bootstrap.sh: the sweeps of
# `make reproduce-plora SEEDS=1` (base-model scores first, then the grids of conf/sweep/plora_smoke, full FT last)
# with the machine's python3, stopped after BUDGET seconds; then the small run files (the archive-runs set) packed
# into $OUT/plora_runs.tgz, from which `python -m experiments.plora_study report` builds the table and figure here.
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
# The grids of conf/sweep/plora_smoke (the cells of `make reproduce-plora`), in name order but full fine-tuning (the
# slowest) last, so that a budget cut loses the fewest cells.
EXPERIMENT=plora_smoke
GRIDS=$(for f in conf/sweep/$EXPERIMENT/*.yaml; do basename "$f" .yaml; done | grep -vx full; echo full)
SWEEPS="python3 -m spectune.training.base_model --experiment $EXPERIMENT --runs runs/plora"
for grid in $GRIDS; do
  SWEEPS="$SWEEPS && python3 -m spectune.train -m experiment=$EXPERIMENT +sweep=$EXPERIMENT/$grid logger=disabled"
  SWEEPS="$SWEEPS seed=$SEEDS"
done
echo "grids: $GRIDS"
start=$(date +%s)
status=0
timeout "$BUDGET" bash -c "$SWEEPS" || status=$?
echo "sweeps ended with status $status after $(( $(date +%s) - start )) s"
find runs/plora \( -name summary.json -o -name config.yaml -o -name eval_results.json -o -name data_indices.json \
  -o -name environment.json -o -name metrics.jsonl -o -name update_rank.json -o -name method_record.json \) \
  -not -path '*/.hydra/*' | tar czf "$OUT/plora_runs.tgz" -T -
ls -la "$OUT"
