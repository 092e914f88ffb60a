#!/usr/bin/env bash
# Transformer² tables at GPU scale (issue 10): run a command once the run folders it reads have finished.
# A GPU queue runs its lines through `xargs -P` in order (scripts/gpu/tables_gpu.sh), so a Table 2 line
# (spectune.adapt over Table 1's SVF experts and the classification expert, score_task over a LoRA run) may start
# while its inputs still train. Here it waits, holding its slot, until every named folder's summary.json says
# "status": "finished", then execs the command (its exit status is the command's). It gives up without running the
# command (exit 3) when a named run ended otherwise ("failed"). A run stopped at the deadline leaves no summary.json:
# the caller's timeout ends the wait. scripts/gpu/t2_queue.py writes the lines that use it.
# Usage: bash scripts/gpu/t2_after.sh <run folder>... -- <command> [args...]
#   e.g. bash scripts/gpu/t2_after.sh runs/t2_table1_gpu/smollm2/lora-r16/t2_gsm8k/seed0 -- python3 -m \
#          spectune.training.score_task --experiment t2_table2_gpu --runs runs/t2_table2_gpu \
#          --run runs/t2_table1_gpu/smollm2/lora-r16/t2_gsm8k/seed0 model=smollm2 task=t2/math seed=0
# Environment: POLL (seconds between checks, default 10).
set -uo pipefail
deps=()
while (($#)) && [[ $1 != -- ]]; do
  deps+=("$1")
  shift
done
if [[ ${1:-} != -- ]] || (($# < 2)); then
  echo "usage: $0 <run folder>... -- <command> [args...]" >&2
  exit 2
fi
shift
t0=$(date +%s)
for dir in "${deps[@]}"; do
  while :; do
    if [[ -f $dir/summary.json ]]; then  # written atomically, once, when the run ends
      grep -q '"status": "finished"' "$dir/summary.json" && break
      if grep -q '"status":' "$dir/summary.json"; then
        echo "t2_after: $dir ended $(grep -o '"status": "[a-z]*"' "$dir/summary.json"); not running: $*" >&2
        exit 3
      fi
    fi
    sleep "${POLL:-10}"
  done
done
echo "t2_after: waited $(($(date +%s) - t0)) s for ${#deps[@]} finished run(s); running: $*"
exec "$@"
