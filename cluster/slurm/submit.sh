#!/usr/bin/env bash
# Generated from src/pipeline/partitioned/merge-step-table.ts by `npm run gen:cluster`; do not edit.
# Usage: RECIPE=recipes/r.yaml WORK=/shared/build [LOCK=recipe.lock.json] [OUT=/shared/out] [PACK_JOBS=M] cluster/slurm/submit.sh N
# Queues N partition tasks and the merge after them: one merge job, or, with PACK_JOBS, the merge as dependent steps:
#   dedup: N tasks, after the partitions — dedup-<h>/: the range's documents that survive the global dedup
#   minhash: N tasks, after the partitions — minhash-<b>/: the range's band buckets of two or more documents
#   plan: 1 task, after dedup and minhash — plan/: the global dedup, the near-duplicates, the mixture and the stream's layout, cut into --pack-jobs ranges
#   scatter: N tasks, after plan — scatter-<p>/: one bin file per pack job
#   gather: M tasks, after scatter — gather-<j>/: pack job j's shards and document indexes
#   finish: 1 task, after gather — the build: shards moved into OUT with the lock, manifest, MIXTURE.md and card
# A failed task is rerun alone, e.g.
#   sbatch --array=<i> --export=ALL cluster/slurm/build.sbatch   (then requeue what depends on it).
set -euo pipefail
n=${1:?usage: submit.sh N (the number of partitions)}
here=$(cd "$(dirname "$0")" && pwd)
export PARTITIONS=$n
array=$(sbatch --parsable --export=ALL --array=0-$((n - 1)) "$here/build.sbatch")
if [ -z "${PACK_JOBS:-}" ]; then
  sbatch --parsable --export=ALL --dependency=afterok:"$array" "$here/merge.sbatch"
  exit
fi
step() { sbatch --parsable --export=ALL,STEP="$1" "${@:2}" "$here/merge-step.sbatch"; }
dedup=$(step dedup --dependency=afterok:"$array" --array=0-$((n - 1)))
minhash=$(step minhash --dependency=afterok:"$array" --array=0-$((n - 1)))
plan=$(step plan --dependency=afterok:"$dedup:$minhash")
scatter=$(step scatter --dependency=afterok:"$plan" --array=0-$((n - 1)))
gather=$(step gather --dependency=afterok:"$scatter" --array=0-$((PACK_JOBS - 1)))
finish=$(step finish --dependency=afterok:"$gather")
