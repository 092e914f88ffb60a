#!/usr/bin/env bash
# LoRA-Dash ablations (issue 7 re-run) on this machine's CPU, from a clean checkout of one commit, so that every run
# folder records that commit as clean (the figure driver refuses mixed or dirty runs).
#
#   bash scripts/cpu/dash_ablations_clean.sh <commit> [seeds, default 0] [log file]
#
# Makes (or reuses) the worktree /tmp/clean_<commit> (git worktree add --detach), then runs there what
# `make dash-ablations ABLATION_SEEDS=n` runs before its driver: one multirun per grid of
# conf/sweep/dash_ablation_smoke (name order), with this repository's .venv and PYTHONPATH=<worktree>/src (the
# editable install points at the main checkout), under `nice -n 10` (the 2 cores are shared). The run folders land in
# /tmp/clean_<commit>/runs/dash_ablation; the caller copies them to runs/dash_ablation and runs the driver.
# Seeds: "0" or "0,1,2" (a comma list: the seed axis of every grid).
set -euo pipefail
SHA=${1:?usage: $0 <commit> [seeds] [log]}
SEEDS=${2:-0}
REPO=$(git rev-parse --show-toplevel)
PY=$REPO/.venv/bin/python
WT=/tmp/clean_$SHA
LOG=${3:-$REPO/runs/dash_ablation_cpu.log}
mkdir -p "$(dirname "$LOG")"
[[ -d $WT ]] || git -C "$REPO" worktree add --detach "$WT" "$SHA"
[[ $(git -C "$WT" rev-parse HEAD) == "$SHA"* ]] || { echo "$WT is not at $SHA" >&2; exit 1; }
[[ -z $(git -C "$WT" status --porcelain --untracked-files=no) ]] || { echo "$WT has changes" >&2; exit 1; }
cd "$WT"
export PYTHONPATH=$WT/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
{
  echo "commit $(git rev-parse HEAD) seeds $SEEDS start $(date -u +%FT%TZ) host $(uname -n) cores $(nproc)"
  start=$(date +%s)
  for grid in conf/sweep/dash_ablation_smoke/*.yaml; do
    grid=${grid#conf/sweep/}
    echo "== $grid"
    nice -n 10 "$PY" -m spectune.train -m experiment=dash_ablation_smoke +sweep="${grid%.yaml}" seed="$SEEDS"
  done
  echo "sweeps done after $(( $(date +%s) - start )) s, end $(date -u +%FT%TZ), MAKE_START $start"
} >>"$LOG" 2>&1
