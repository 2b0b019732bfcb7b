#!/usr/bin/env bash
# Usage: RECIPE=recipes/r.yaml WORK=/shared/build [LOCK=recipe.lock.json] [OUT=/shared/out] [PACK_JOBS=M] cluster/slurm/submit.sh N
# Queues N partition tasks and the merge after them: one merge job, or, with PACK_JOBS, the merge as dependent steps
# (N dedup tasks, one per hash range; plan; N scatter tasks; M gather tasks that write the shards; finish). A failed
# task is rerun alone, e.g.
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
plan=$(step plan --dependency=afterok:"$dedup")
scatter=$(step scatter --dependency=afterok:"$plan" --array=0-$((n - 1)))
gather=$(step gather --dependency=afterok:"$scatter" --array=0-$((PACK_JOBS - 1)))
step finish --dependency=afterok:"$gather"
