#!/usr/bin/env bash
# Usage: RECIPE=recipes/r.yaml WORK=/shared/build [LOCK=recipe.lock.json] [OUT=/shared/out] cluster/slurm/submit.sh N
# Queues N partition tasks and the merge after them; a failed task is rerun alone with
#   sbatch --array=<i> --export=ALL cluster/slurm/build.sbatch   (then requeue the merge).
set -euo pipefail
n=${1:?usage: submit.sh N (the number of partitions)}
here=$(cd "$(dirname "$0")" && pwd)
export PARTITIONS=$n
array=$(sbatch --parsable --export=ALL --array=0-$((n - 1)) "$here/build.sbatch")
sbatch --parsable --export=ALL --dependency=afterok:"$array" "$here/merge.sbatch"
