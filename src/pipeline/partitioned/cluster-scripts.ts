/**
 * The cluster files that run a merge as steps, written from the step table (merge-step-table.ts): Slurm's chain
 * (cluster/slurm/submit.sh queues the steps with their dependencies; merge-step.sbatch runs one) and Kubernetes'
 * Jobs (cluster/kubernetes/merge-steps.yaml). `npm run gen:cluster` writes them; test/pipeline/partitioned/
 * cluster-scripts.test.ts fails while the checked-in files differ, so a new step reaches both schedulers.
 */
import { MERGE_STEP_TABLE, type MergeStepSpec } from "./merge-step-table.ts";

const STEPS: readonly MergeStepSpec[] = MERGE_STEP_TABLE;
const indexed = STEPS.filter((s) => s.index);
const shellVar = (name: string) => name.replace(/-/g, "_");

/** Slurm's --array for a step: over the partitions or the pack jobs. */
const slurmArray = (s: MergeStepSpec) => (s.jobs === "per_partition" ? ` --array=0-$((n - 1))` : s.jobs === "per_pack_job" ? ` --array=0-$((PACK_JOBS - 1))` : "");

export function slurmSubmit(): string {
  const chain = STEPS.map((s) => {
    const deps = s.after.length ? s.after.map((a) => `$${shellVar(a)}`).join(":") : "$array";
    return `${shellVar(s.name)}=$(step ${s.name} --dependency=afterok:"${deps}"${slurmArray(s)})`;
  });
  return `#!/usr/bin/env bash
# Generated from src/pipeline/partitioned/merge-step-table.ts by \`npm run gen:cluster\`; do not edit.
# Usage: RECIPE=recipes/r.yaml WORK=/shared/build [LOCK=recipe.lock.json] [OUT=/shared/out] [PACK_JOBS=M] cluster/slurm/submit.sh N
# Queues N partition tasks and the merge after them: one merge job, or, with PACK_JOBS, the merge as dependent steps:
${STEPS.map((s) => `#   ${s.name}: ${s.jobs === "one" ? "1 task" : s.jobs === "per_partition" ? "N tasks" : "M tasks"}${s.after.length ? `, after ${s.after.join(" and ")}` : ", after the partitions"} — ${s.writes}`).join("\n")}
# A failed task is rerun alone, e.g.
#   sbatch --array=<i> --export=ALL cluster/slurm/build.sbatch   (then requeue what depends on it).
set -euo pipefail
n=\${1:?usage: submit.sh N (the number of partitions)}
here=$(cd "$(dirname "$0")" && pwd)
export PARTITIONS=$n
array=$(sbatch --parsable --export=ALL --array=0-$((n - 1)) "$here/build.sbatch")
if [ -z "\${PACK_JOBS:-}" ]; then
  sbatch --parsable --export=ALL --dependency=afterok:"$array" "$here/merge.sbatch"
  exit
fi
step() { sbatch --parsable --export=ALL,STEP="$1" "\${@:2}" "$here/merge-step.sbatch"; }
${chain.join("\n")}
`;
}

/** The bash that turns STEP and the job's index variable into the step's arguments (Slurm's and Kubernetes' alike). */
function stepArgs(indexVar: string, onMissing: string): string[] {
  return [
    `case "$STEP" in`,
    `  ${STEPS.filter((s) => s.packJobs).map((s) => s.name).join(" | ")}) args+=(--pack-jobs "\${PACK_JOBS:?set PACK_JOBS to the number of gather tasks}") ;;`,
    `  ${indexed.map((s) => s.name).join(" | ")})`,
    `    : "\${${indexVar}:?${onMissing}}"`,
    `    args+=(--index "$${indexVar}")`,
    `    ;;`,
    `esac`,
  ];
}

export function slurmMergeStep(): string {
  return `#!/usr/bin/env bash
# Generated from src/pipeline/partitioned/merge-step-table.ts by \`npm run gen:cluster\`; do not edit.
# One step of the merge run as dependent jobs, so its work spreads over many nodes (submit.sh queues them when
# PACK_JOBS is set). STEP is one of:
${STEPS.map((s) => `#   ${s.name}${s.index ? ` (an array: --array=0-${s.jobs === "per_pack_job" ? "PACK_JOBS" : "PARTITIONS"}-1; the task id is ${s.index})` : " (one task)"}: ${s.reads}`).join("\n")}
# A failed task reruns alone.
#SBATCH --job-name=chuxin-merge-step
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=%x-%A_%a.log
set -euo pipefail
: "\${RECIPE:?set RECIPE to the recipe file}" "\${WORK:?set WORK to the shared folder of the partitions}" "\${PARTITIONS:?set PARTITIONS to the array size}"
: "\${STEP:?set STEP to ${STEPS.map((s) => s.name).join(", ")}}"
parts=()
for ((i = 0; i < PARTITIONS; i++)); do parts+=("$WORK/part-$i"); done
args=(--merge-step "$STEP")
${stepArgs("SLURM_ARRAY_TASK_ID", "submit STEP=$STEP as an array job (sbatch --array=...)").join("\n")}
\${CHUXIN_DATA:-npx --yes chuxin-data} build "$RECIPE" --merge "\${parts[@]}" --out "\${OUT:-$WORK/build}" --memory "\${MEMORY:-60%}" \\
  "\${args[@]}" \${MERGE_ARGS:-} # more build options, given to every step, e.g. --max-shard-bytes 1073741824
`;
}

function kubernetesJob(s: MergeStepSpec): string {
  const completions = s.jobs === "per_partition" ? "8" : s.jobs === "per_pack_job" ? "16" : undefined;
  const spec = completions
    ? [`  completionMode: Indexed`, `  completions: ${completions}`, `  parallelism: ${completions}`, `  backoffLimitPerIndex: 2`]
    : [`  backoffLimit: 2`];
  const script = [
    `set -euo pipefail;`,
    `parts=(); for ((i = 0; i < PARTITIONS; i++)); do parts+=("$WORK/part-$i"); done;`,
    `args=(--merge-step "$STEP");`,
    `case "$STEP" in ${STEPS.filter((s) => s.packJobs).map((s) => s.name).join("|")}) args+=(--pack-jobs "$PACK_JOBS");;`,
    `${indexed.map((s) => s.name).join("|")}) : "\${JOB_COMPLETION_INDEX:?run STEP=$STEP as an Indexed Job}"; args+=(--index "$JOB_COMPLETION_INDEX");; esac;`,
    `\${CHUXIN_DATA:-npx --yes chuxin-data} build "$RECIPE" --merge "\${parts[@]}" --out "$WORK/build" --memory 60%`,
    `"\${args[@]}" \${MERGE_ARGS:-}`,
  ];
  return `apiVersion: batch/v1
kind: Job
metadata:
  name: chuxin-merge-${s.name}
spec:
${spec.join("\n")}
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: ${s.name}
          image: node:20-bookworm
          env:
            - { name: STEP, value: ${s.name} }
            - { name: PARTITIONS, value: "8" }
            - { name: PACK_JOBS, value: "16" }
            - { name: RECIPE, value: /recipes/recipe.yaml }
            - { name: WORK, value: /work }
          command:
            - bash
            - -c
            - >-
${script.map((l) => `              ${l}`).join("\n")}
          resources:
            requests: { cpu: "4", memory: 32Gi }
            limits: { memory: 32Gi }
          volumeMounts:
            - { name: work, mountPath: /work }
            - { name: recipes, mountPath: /recipes }
      volumes:
        - name: work
          persistentVolumeClaim: { claimName: chuxin-work }
        - name: recipes
          configMap: { name: chuxin-recipe }
`;
}

export function kubernetesMergeSteps(): string {
  return `# Generated from src/pipeline/partitioned/merge-step-table.ts by \`npm run gen:cluster\`; do not edit.
# The merge as dependent Jobs, so that its work spreads over many pods (instead of merge-job.yaml's one pod). Apply
# each once the Jobs it runs after are complete:
#   for step in ${STEPS.map((s) => s.name).join(" ")}; do
#     yq "select(.metadata.name == \\"chuxin-merge-$step\\")" merge-steps.yaml | kubectl apply -f -
#     kubectl wait --for=condition=complete job/chuxin-merge-$step --timeout=-1s
#   done
${STEPS.map((s) => `# ${s.name}: ${s.index ? `an Indexed Job, completions = ${s.jobs === "per_pack_job" ? "PACK_JOBS" : "PARTITIONS"} (the index is ${s.index})` : "one pod"}${s.after.length ? `; after ${s.after.join(" and ")}` : ""}.`).join("\n")}
# A failed pod is retried alone. /work is the build's ReadWriteMany volume, as in build-job.yaml; every Job must carry
# the same PARTITIONS, PACK_JOBS and MERGE_ARGS.
${STEPS.map(kubernetesJob).join("---\n")}`;
}

/** Every generated file, by its path in the repository. */
export function clusterFiles(): Record<string, string> {
  return {
    "cluster/slurm/submit.sh": slurmSubmit(),
    "cluster/slurm/merge-step.sbatch": slurmMergeStep(),
    "cluster/kubernetes/merge-steps.yaml": kubernetesMergeSteps(),
  };
}
