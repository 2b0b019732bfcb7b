/**
 * A training plan as one model repo: each stage's final checkpoint on a branch named for the stage, its intermediate
 * checkpoints on `<stage>-step-…` branches (not `<stage>/step-…`: git cannot hold a ref `x` and a ref `x/y` at once), and on main the last stage's final checkpoint with every stage's log,
 * options and loss curve, the plan and its lock, and a card with the table of stages and the loss across them.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { readManifest } from "../shards/manifest-file.ts";
import { trainConfigSchema, type TrainConfig } from "../train/options.ts";
import { PLAN_LOCK, readPlanLock } from "../train/plan-run.ts";
import { stagesCurveSvg } from "../train/plot.ts";
import { UsageError } from "../util/errors.ts";
import { modelRelease, publicPath, publicRunConfig } from "./model-release.ts";
import { bytesEntry, fileEntry, tokensLabel, type ReleaseBranch, type ReleaseFile } from "./release.ts";

export interface PlanReleaseOptions {
  planDir: string;
  dataRepo?: string;
  branch: string;
  license?: string;
}

/** Whether a folder is a plan's (train --plan wrote plan.lock.json there) rather than one run's. */
export function isPlanFolder(dir: string): boolean {
  return existsSync(join(dir, PLAN_LOCK));
}

interface StageRow {
  name: string;
  config: TrainConfig;
  data: string;
  step: number;
  tokens: number;
  lastLoss: number;
}

export async function planRelease(o: PlanReleaseOptions): Promise<{ branches: ReleaseBranch[]; warnings: string[] }> {
  const planDir = resolve(o.planDir);
  const lock = await readPlanLock(join(planDir, PLAN_LOCK));
  if (!lock || lock.stages.length === 0) throw new UsageError(`${planDir}: no finished stage in ${PLAN_LOCK}; finish the first stage (train --plan … --resume) before publishing`);
  const branches: ReleaseBranch[] = [];
  const warnings: string[] = [];
  const rows: StageRow[] = [];
  const logs: ReleaseFile[] = [];
  const curve: { name: string; points: { tokens: number; loss: number }[] }[] = [];
  let tokensBefore = 0;
  let lastMain: ReleaseBranch | undefined;
  for (const stage of lock.stages) {
    const runDir = join(planDir, stage.name);
    const release = await modelRelease({ runDir, branch: stage.name, ...(o.dataRepo ? { dataRepo: o.dataRepo } : {}), ...(o.license ? { license: o.license } : {}) });
    warnings.push(...release.warnings.map((w) => `stage ${stage.name}: ${w}`));
    for (const b of release.branches) {
      if (b.branch === stage.name) lastMain = b;
      branches.push(b.branch === stage.name ? { ...b, title: `stage ${stage.name}: ${b.title}` } : { ...b, branch: `${stage.name}-${b.branch}`, title: `stage ${stage.name}: ${b.title}` });
    }
    const config = trainConfigSchema.parse(JSON.parse(await readFile(join(runDir, "run_config.json"), "utf8")));
    const manifest = await readManifest(config.data).catch(() => undefined);
    rows.push({ name: stage.name, config, data: manifest?.recipe.name ?? basename(config.data), step: stage.step, tokens: stage.tokens_seen, lastLoss: NaN });
    const points: { tokens: number; loss: number }[] = [];
    for (const line of (await readFile(join(runDir, "metrics.jsonl"), "utf8")).split("\n")) {
      if (!line) continue;
      const m = JSON.parse(line) as { loss?: number; tokens?: number };
      if (m.loss !== undefined && m.tokens !== undefined) points.push({ tokens: tokensBefore + m.tokens, loss: m.loss });
    }
    rows[rows.length - 1]!.lastLoss = points[points.length - 1]?.loss ?? NaN;
    curve.push({ name: stage.name, points });
    tokensBefore += stage.tokens_seen;
    logs.push(await fileEntry(`stages/${stage.name}/metrics.jsonl`, join(runDir, "metrics.jsonl")), bytesEntry(`stages/${stage.name}/run_config.json`, publicRunConfig(config, o.dataRepo)));
    if (existsSync(join(runDir, "loss.svg"))) logs.push(await fileEntry(`stages/${stage.name}/loss.svg`, join(runDir, "loss.svg")));
  }
  const last = lock.stages[lock.stages.length - 1]!;
  // main: the last stage's loadable files (not its own run log, which is under stages/), the plan, its lock, the curve.
  const loadable = lastMain!.files.filter((f) => !["metrics.jsonl", "loss.svg", "run_config.json"].includes(f.path));
  const title = basename(planDir);
  const mainFiles = [
    ...loadable,
    ...logs,
    bytesEntry("loss.svg", stagesCurveSvg(curve, `${title}: training loss by stage`)),
    ...(existsSync(join(planDir, "plan.yaml")) ? [await fileEntry("plan.yaml", join(planDir, "plan.yaml"))] : []),
    bytesEntry(PLAN_LOCK, JSON.stringify({ ...lock, plan: "plan.yaml", stages: lock.stages }, null, 2) + "\n"),
  ];
  branches.push({ branch: o.branch, files: mainFiles, card: bytesEntry("README.md", planCard(o, title, rows, tokensBefore)), title: `${title}: ${lock.stages.length} stages, ${tokensLabel(tokensBefore)} tokens; main is stage ${last.name}` });
  return { branches, warnings };
}

function planCard(o: PlanReleaseOptions, title: string, rows: StageRow[], tokens: number): string {
  const final = rows[rows.length - 1]!;
  const mc = final.config.model_config;
  const front = ["---", ...(o.license ? [`license: ${o.license}`] : []), "library_name: transformers", "pipeline_tag: text-generation", ...(o.dataRepo ? ["datasets:", `- ${o.dataRepo}`] : []), "tags:", "- llama", "- chuxin-data", "---"];
  const schedule = (c: TrainConfig) => `${c.schedule}${c.schedule === "wsd" ? ` (decay ${c.decay_fraction}, ${c.decay_shape})` : ""}, peak ${c.lr}, warmup ${c.warmup_steps}`;
  const table = rows.map(
    (r, i) =>
      `| ${i + 1} | \`${r.name}\` | ${r.data} | ${r.tokens.toLocaleString("en-US")} | ${r.step.toLocaleString("en-US")} | ${schedule(r.config)} | ${r.config.context?.toLocaleString("en-US") ?? ""} | ${r.config.model_config.ropeTheta.toLocaleString("en-US")}${r.config.model_config.ropeScaling ? ` (${r.config.model_config.ropeScaling.type} × ${r.config.model_config.ropeScaling.factor})` : ""} | ${r.config.init_source ? publicPath(r.config.init_source.source) : "random"} | ${r.lastLoss.toFixed(4)} |`,
  );
  return `${front.join("\n")}
# ${title}

A LLaMA-2-style model (${mc.nLayers} layers, hidden ${mc.hidden}, ${mc.nHeads} heads, FFN ${mc.ffn}, vocabulary ${mc.vocab.toLocaleString("en-US")},
${mc.maxSeq.toLocaleString("en-US")} positions, RoPE θ ${mc.ropeTheta.toLocaleString("en-US")}) trained with \`chuxin-data train --plan\` in ${rows.length} stages,
each starting from the one before: ${tokens.toLocaleString("en-US")} tokens (${tokensLabel(tokens)}) in all. main holds the last stage's final checkpoint.

## Stages

| # | stage (branch) | data | tokens | steps | schedule | context | RoPE θ | started from | final loss |
|---:|---|---|---:|---:|---|---:|---:|---|---:|
${table.join("\n")}

![loss by stage](loss.svg)

Each stage's final checkpoint is the branch named for it, and its intermediate checkpoints are \`<stage>-step-…\` branches
(\`revision=...\` in \`from_pretrained\`). \`stages/<stage>/\` holds each stage's metrics.jsonl, run_config.json and loss curve;
\`plan.yaml\` is the plan as it ran, \`plan.lock.json\` the sha256 of each stage's final checkpoint.
`;
}
