#!/bin/bash
# hashup upload, sharded over a Slurm job array: N array tasks, each uploads its own shard.
#
#   sbatch slurm-array.sh /shared/library [more hashup upload flags, e.g. --include '*.sif']
#   sbatch --array=0-31 slurm-array.sh /shared/library      # N = 32 instead of the 8 below
#
# N, the shard count, is the size of the array as submitted (SLURM_ARRAY_TASK_COUNT), so
# `--array` on the sbatch command line (which overrides the #SBATCH line below) is the only
# place to change it. `--shard auto/N` reads the index K from SLURM_ARRAY_TASK_ID, which must
# run 0..N-1: an array that does not (started at 1, or with a step) stops every task with
# exit 2 before anything is read. A throttle (`--array=0-31%4`) is fine. The shards
# partition the files by a stable hash of their object names, so the N tasks upload every file
# exactly once, on whichever nodes they land, as long as all see the same tree with the same
# arguments.
#
# Merging the manifests afterwards (each task writes shard-K.jsonl; every file is in exactly
# one), e.g. from a job that depends on the whole array (sbatch --dependency=afterany:<jobid>):
#
#   hashup manifest merge shard-*.jsonl > library.jsonl
#
# A task that exits 1 (some files failed) can be run again on its own; an array of one task
# no longer says N, so HASHUP_SHARDS does (here for N = 8):
#   sbatch --array=<K> --export=ALL,HASHUP_SHARDS=8 slurm-array.sh /shared/library
#
# scripts/shard/test-slurm.sh runs this recipe on a one-node Slurm against SeaweedFS.
#SBATCH --job-name=hashup-upload
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --time=12:00:00
#SBATCH --output=hashup-%A_%a.log

set -euo pipefail

library=${1:?usage: sbatch [--array=0-(N-1)] slurm-array.sh LIBRARY_DIR [HASHUP_UPLOAD_FLAGS...]}
shift

fail() {
    echo "slurm-array.sh: $*" >&2
    exit 2
}

[ -n "${SLURM_ARRAY_TASK_ID:-}" ] ||
    fail "not a Slurm array task: submit with sbatch --array=0-(N-1)"
first=${SLURM_ARRAY_TASK_MIN:-} last=${SLURM_ARRAY_TASK_MAX:-} count=${SLURM_ARRAY_TASK_COUNT:-}
if [ -n "${HASHUP_SHARDS:-}" ]; then
    shards=$HASHUP_SHARDS
elif [ "$first" != 0 ] || [ "$((last + 1))" != "$count" ]; then
    fail "the array runs $first-$last in $count tasks;" \
        "shards need --array=0-(N-1), or HASHUP_SHARDS=N to run some of N shards again"
else
    shards=$count
fi

# PROMINENCE_URL and the token (PROMINENCE_TOKEN or ~/.prominence/token), or the AWS keys for
# --s3, come from the submitting environment, which sbatch passes on.
exec hashup upload "$library" \
    --shard "auto/$shards" \
    --manifest "shard-${SLURM_ARRAY_TASK_ID}.jsonl" \
    --jobs "${SLURM_CPUS_PER_TASK:-4}" \
    --progress log \
    "$@"
