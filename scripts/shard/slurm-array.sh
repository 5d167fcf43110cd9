#!/bin/bash
# hashup upload, sharded over a Slurm job array: N array tasks, each uploads its own shard.
#
#   sbatch slurm-array.sh /shared/library [more hashup upload flags, e.g. --include '*.sif']
#
# `--shard auto/N` reads the index K from SLURM_ARRAY_TASK_ID, which must run 0..N-1: keep
# `--array=0-(N-1)` (an array started at 1 would leave shard 0 out, and its last task would
# stop with "SLURM_ARRAY_TASK_ID=N is not below the shard count N"). The shards partition the
# files by a stable hash of their object names, so the N tasks upload every file exactly once,
# on whichever nodes they land, as long as all see the same tree with the same arguments.
#
# Merging the manifests afterwards (each task writes shard-K.jsonl; every file is in exactly
# one), e.g. from a job that depends on the whole array (sbatch --dependency=afterany:<jobid>):
#
#   hashup manifest merge shard-*.jsonl > library.jsonl
#
# A task that exits 1 (some files failed) can be run again on its own:
#   sbatch --array=<K> slurm-array.sh /shared/library
#SBATCH --job-name=hashup-upload
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --time=12:00:00
#SBATCH --output=hashup-%A_%a.log

set -euo pipefail

shards=8 # N: keep equal to the size of --array above
library=${1:?usage: sbatch slurm-array.sh LIBRARY_DIR [HASHUP_UPLOAD_FLAGS...]}
shift

# PROMINENCE_URL and the token (PROMINENCE_TOKEN or ~/.prominence/token) come from the
# submitting environment, which sbatch passes on.
exec hashup upload "$library" \
    --shard "auto/$shards" \
    --manifest "shard-${SLURM_ARRAY_TASK_ID}.jsonl" \
    --jobs "${SLURM_CPUS_PER_TASK:-4}" \
    --progress log \
    "$@"
