/**
 * A training plan: stages in order (pretraining, cool-down, context extension …), each with its own data, options
 * and starting weights — by default the previous stage's final checkpoint. The file is YAML checked against a schema
 * derived from the train options (options.ts), so every option a stage may set is the flag's own, by the same name.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { loadRecipe } from "../recipe/load.ts";
import { parseYamlWith, YamlFileError, type PathKey } from "../recipe/yaml-schema.ts";
import { readManifest } from "../shards/manifest-file.ts";
import { MANIFEST } from "../shards/layout.ts";
import { UsageError } from "../util/errors.ts";
import { canonicalJson, sha256Hex } from "../util/hash.ts";
import { SHAPE_KEYS, type ModelConfig, type RopeScalingType } from "../native/addon.ts";
import { modelForRun, resolveModelConfig } from "./model-config.ts";
import { optionMeta, parseTokenCount, trainConfigSchema, type TrainKey } from "./options.ts";

/** Options a stage does not set: the plan decides them (its folder, the stage's data, its starting weights) or the trainer records them. */
const PLAN_OWNED = new Set<TrainKey>(["out", "data", "init_from", "model_config", "init_source", "adam_step_offset", "device", "tokens"]);

/** A schema's value type without its default, so a stage that leaves an option out inherits it instead of taking the default. */
function withoutDefault(schema: z.ZodType): z.ZodType {
  let s: any = schema;
  while (s._zod.def.type === "default") s = s._zod.def.innerType;
  return s;
}

const stageOptionShape = Object.fromEntries(
  (Object.keys(trainConfigSchema.shape) as TrainKey[]).filter((k) => !PLAN_OWNED.has(k)).map((k) => {
    const describe = optionMeta(k).describe;
    const value = withoutDefault(trainConfigSchema.shape[k]).optional();
    return [k, describe ? value.describe(describe) : value];
  }),
);

const STAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const stageSchema = z.strictObject({
  name: z.string().regex(STAGE_NAME, "a stage name is a folder name: letters, digits, '_', '.', '-'"),
  data: z.string().min(1).optional().describe("a build folder, or a recipe (.yaml) built into PLAN_DIR/data/<recipe name> when missing; default: the previous stage's"),
  init_from: z.string().min(1).optional().describe("'previous' (the default after the first stage), 'none' (random weights), a checkpoint or run folder, or a Hub repo org/name[@rev]"),
  tokens: z.union([z.number().int().positive(), z.string()]).optional().describe("train to this many tokens (2T, 500M) instead of steps"),
  ...stageOptionShape,
});

export const planSchema = z.strictObject({
  name: z.string().min(1).optional(),
  description: z.string().optional(),
  defaults: z.strictObject({ tokens: stageSchema.shape.tokens, ...stageOptionShape }).optional().describe("options every stage starts from"),
  stages: z.array(stageSchema).min(1),
});

export type Plan = z.infer<typeof planSchema>;
export type PlanStage = z.infer<typeof stageSchema>;

export function planJsonSchema(): Record<string, unknown> {
  return { $schema: "https://json-schema.org/draft/2020-12/schema", title: "chuxin-data training plan", ...z.toJSONSchema(planSchema, { io: "input", unrepresentable: "any" }) };
}

/** One stage, resolved: the train options it runs with (before the trainer fills in what the data decides). */
export interface ResolvedStage {
  name: string;
  index: number;
  /** the build folder read; `recipe` when it is built from one first */
  data: string;
  recipe?: string;
  /** 'previous', 'none', or a path / repo */
  initFrom: string;
  /** the raw options for parseTrainConfig, less data, out and init_from (set when the stage runs) */
  options: Record<string, unknown>;
  /** --model given for the stage (or in the defaults): with a previous stage, its shapes must be that stage's */
  modelGiven: boolean;
  /** sha256 of the stage as written (with the defaults it inherits): a finished stage whose definition changed is refused on resume */
  definitionSha256: string;
  /** "FILE:line:col" of the stage, for errors found later */
  at: string;
}

export interface LoadedPlan {
  path: string;
  plan: Plan;
  stages: ResolvedStage[];
}

/** Reads and checks a plan file; relative paths in it are relative to its folder. */
export async function loadPlan(file: string): Promise<LoadedPlan> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new UsageError(`--plan ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)}); check the path`);
  }
  const { data: plan, where } = parseYamlWith(planSchema, text, file);
  const at = (path: PathKey[]) => `${file}:${where(path)}`;
  const base = dirname(resolve(file));
  const local = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const problems: string[] = [];
  const names = new Set<string>();
  const stages: ResolvedStage[] = [];
  let previousData: string | undefined;
  plan.stages.forEach((stage, i) => {
    if (names.has(stage.name)) problems.push(`${at(["stages", i, "name"])}: stages[${i}].name: '${stage.name}' is used twice; stage names are folders and must differ`);
    names.add(stage.name);
    const { name, data, init_from, tokens, ...own } = stage;
    const merged: Record<string, unknown> = { ...(plan.defaults ?? {}), ...own };
    const tokenText = tokens ?? plan.defaults?.tokens;
    if (tokenText !== undefined) {
      const count = parseTokenCount(tokenText);
      if (count === undefined) problems.push(`${at(["stages", i, "tokens"])}: stages[${i}].tokens: ${JSON.stringify(tokenText)} is not a token count (e.g. 2T, 500M, 4096)`);
      if ("steps" in own) problems.push(`${at(["stages", i, "steps"])}: stages[${i}] sets both steps and tokens; give one`);
      else delete merged.steps;
      merged.tokens = count ?? null;
    }
    if ("model" in merged && typeof merged.model === "string" && existsSync(local(merged.model))) merged.model = local(merged.model);
    let dataPath = data === undefined ? previousData : local(data);
    let recipe: string | undefined;
    if (dataPath === undefined) problems.push(`${at(["stages", i])}: stages[${i}] (${name}): no data; give a build folder or a recipe`);
    else if (/\.ya?ml$/i.test(dataPath)) {
      recipe = dataPath;
      dataPath = undefined; // decided from the recipe's name below
    }
    const initFrom = init_from ?? (i === 0 ? "none" : "previous");
    if (i === 0 && initFrom === "previous") problems.push(`${at(["stages", i, "init_from"])}: stages[0].init_from: the first stage has no previous stage; use 'none' or a checkpoint`);
    const resolvedInit = initFrom === "previous" || initFrom === "none" || !existsSync(local(initFrom)) ? initFrom : local(initFrom);
    stages.push({
      name,
      index: i,
      data: dataPath ?? "",
      ...(recipe ? { recipe } : {}),
      initFrom: resolvedInit,
      options: merged,
      modelGiven: "model" in merged,
      definitionSha256: sha256Hex(canonicalJson({ name, data: data ?? null, init_from: initFrom, options: merged })),
      at: at(["stages", i]),
    });
    previousData = data === undefined ? previousData : local(data);
  });
  if (problems.length > 0) throw new YamlFileError(file, problems.map((p) => p.slice(file.length + 1)));
  return { path: resolve(file), plan, stages };
}

/** Where a recipe stage's data is built: PLAN_DIR/data/<recipe name>, shared by the stages naming that recipe. */
export async function recipeBuildFolder(planDir: string, recipe: string): Promise<string> {
  return join(planDir, "data", (await loadRecipe(recipe)).recipe.name);
}

/**
 * Checks that the stages chain before the first one starts: each stage's data exists (or its recipe loads), the
 * stages read data of one tokenizer, a stage that starts from the previous one has its shapes, and a context beyond
 * the model's positions comes with a new RoPE base or --force-positions. Fills in each recipe stage's build folder.
 */
export async function checkChain(loaded: LoadedPlan, planDir: string): Promise<void> {
  let previous: { model: ModelConfig; name: string } | undefined;
  let tokenizer: { sha256: string; stage: string } | undefined;
  for (const stage of loaded.stages) {
    const fail = (message: string): never => {
      throw new UsageError(`${stage.at}: stage '${stage.name}': ${message}`);
    };
    if (stage.options.eval_tasks && !stage.options.eval_tasks_every) fail("eval_tasks needs eval_tasks_every (steps between runs)");
    let sequenceLength: number;
    if (stage.recipe) {
      if (!existsSync(stage.recipe)) fail(`its recipe ${stage.recipe} does not exist; fix the path in 'data'`);
      const recipe = await loadRecipe(stage.recipe).catch((error) => fail(`its recipe does not load: ${(error as Error).message}`));
      stage.data = await recipeBuildFolder(planDir, stage.recipe);
      sequenceLength = recipe.recipe.sequence_length;
    } else {
      if (!existsSync(join(stage.data, MANIFEST))) {
        fail(`its data ${stage.data} is not a build (no ${MANIFEST}); build it first (chuxin-data build RECIPE --out ${stage.data}) or give the recipe as 'data'`);
      }
      const manifest = await readManifest(stage.data);
      sequenceLength = manifest.sequence_length;
      if (tokenizer && manifest.tokenizer.sha256 !== tokenizer.sha256) {
        fail(`its data was tokenised with another tokenizer (sha256 ${manifest.tokenizer.sha256.slice(0, 12)}…) than stage '${tokenizer.stage}' (${tokenizer.sha256.slice(0, 12)}…), so the same ids would mean other tokens; rebuild it with the same tokenizer`);
      }
      tokenizer ??= { sha256: manifest.tokenizer.sha256, stage: stage.name };
    }
    let model: ModelConfig | undefined;
    if (stage.initFrom === "previous" && previous) {
      model = previous.model;
      if (stage.modelGiven) {
        const own = (await resolveModelConfig(String(stage.options.model)).catch((e) => fail((e as Error).message))).config;
        const differ = SHAPE_KEYS.filter((k) => own[k] !== model![k]);
        if (differ.length > 0) fail(`its model ${stage.options.model} is not stage '${previous.name}''s shape (${differ.map((k) => `${k} ${own[k]} vs ${model![k]}`).join(", ")}); leave 'model' out to continue that model`);
      }
    } else if (stage.initFrom === "none" || stage.initFrom === "previous") {
      model = (await resolveModelConfig(String(stage.options.model ?? "tiny")).catch((e) => fail((e as Error).message))).config;
    } else if (existsSync(join(stage.initFrom, "config.json")) || existsSync(stage.initFrom)) {
      model = undefined; // a local checkpoint or a Hub repo: its config is read when the stage starts
    }
    if (model) {
      const run = modelForRun(model, {
        ropeTheta: (stage.options.rope_theta as number | undefined) ?? null,
        ropeScaling: (stage.options.rope_scaling as RopeScalingType | undefined) ?? null,
        ropeFactor: (stage.options.rope_factor as number | undefined) ?? null,
        context: (stage.options.context as number | undefined) ?? null,
        sequenceLength,
        forcePositions: stage.options.force_positions === true,
      });
      if (run.problem) fail(run.problem);
      previous = { model: run.model, name: stage.name };
    } else previous = undefined;
  }
}
