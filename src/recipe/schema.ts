import { z } from "zod";
import { QUALITY_PARAMS, QUALITY_PRESETS, type QualityPreset } from "./quality-presets.ts";

/** Hub repo ids are "org/name" (or a bare name for legacy repos); never a path that could escape the cache. */
const repoId = z
  .string()
  .regex(/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/, "a Hub repo id such as 'openai/gsm8k'");

const fileGlobs = z.array(z.string().min(1)).min(1);

const hubSource = z.strictObject({
  repo: repoId,
  revision: z.string().min(1).default("main").describe("branch, tag or 40-hex commit sha; pin a commit for releases"),
  files: fileGlobs.describe("globs over the repo's file paths, e.g. 'data/train-*.parquet'"),
});

const localSource = z.strictObject({
  files: fileGlobs.describe("globs relative to the recipe file; parquet, jsonl or jsonl.gz"),
});

/**
 * Each pass over a source is one seeded shuffle of it in the plan, so passes cost time however small the source:
 * ChuXin repeats its sources at most a few times, and 10,000 passes is far past any mixture worth training on.
 */
export const MAX_EPOCHS = 10_000;
const MAX_EPOCHS_MESSAGE = `at most ${MAX_EPOCHS.toLocaleString("en-US")} (each epoch is a pass of the source's documents in the plan); to fill a budget, set target_tokens and add data`;

/** MinHash LSH (src/pipeline/stages/near-dedup.ts); the defaults are datatrove's MinhashConfig. */
const minhashFields = z.strictObject({
  ngram: z.number().int().min(1).max(64).default(5).describe("words per shingle; in CJK text each character is a word"),
  bands: z.number().int().min(1).max(256).default(14).describe("LSH bands: two documents sharing one band's key are candidates"),
  rows: z.number().int().min(1).max(64).default(8).describe("hash functions per band; a pair at Jaccard J is a candidate with probability 1 - (1 - J^rows)^bands"),
  seed: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).default(1).describe("seeds every hash function"),
  verify_jaccard: z
    .number()
    .gt(0)
    .max(1)
    .optional()
    .describe("join a candidate to its bucket's first document only when their true shingle Jaccard is at least this (removes LSH false positives)"),
}).superRefine((m, ctx) => {
  // cx_minhash_bands' bound: every hash function's minimum is held per document.
  if (m.bands * m.rows > MAX_MINHASH_FUNCTIONS) {
    ctx.addIssue({ code: "custom", message: `bands × rows is ${m.bands * m.rows}; at most ${MAX_MINHASH_FUNCTIONS} hash functions (e.g. 14 × 8 = 112, datatrove's)`, path: ["rows"] });
  }
});
/** The most hash functions (bands × rows) the addon takes. */
export const MAX_MINHASH_FUNCTIONS = 4096;
export type MinhashSpec = z.output<typeof minhashFields>;
/** The recipe's `dedup.minhash` as a spec, or undefined when off (`true` takes the defaults). */
export function minhashSpec(value: boolean | MinhashSpec | undefined): MinhashSpec | undefined {
  if (value === undefined || value === false) return undefined;
  return value === true ? minhashFields.parse({}) : value;
}

/** Each quality preset: `true` (datatrove's thresholds) or its thresholds by name (quality-presets.ts). */
const qualityPresetFields = Object.fromEntries(
  QUALITY_PRESETS.map((preset) => {
    const params = QUALITY_PARAMS.filter((q) => q.preset === preset);
    const fields = z.strictObject(
      Object.fromEntries(params.map((q) => [q.name, (q.integer ? z.number().int() : z.number()).nonnegative().default(q.default).describe(q.describe)])),
    );
    return [preset, z.union([z.boolean(), fields]).optional().describe(`${preset} quality filter: true for datatrove's thresholds, or thresholds by name`)];
  }),
) as Record<QualityPreset, z.ZodOptional<z.ZodUnion<[z.ZodBoolean, z.ZodObject<Record<string, z.ZodDefault<z.ZodNumber>>>]>>>;

/** The thresholds of a recipe's quality presets that are on (a preset given as `true` takes the defaults). */
export function qualityThresholds(filters: Recipe["filters"]): Map<QualityPreset, Record<string, number>> {
  const on = new Map<QualityPreset, Record<string, number>>();
  for (const preset of QUALITY_PRESETS) {
    const value = filters[preset];
    if (value === undefined || value === false) continue;
    const given = value === true ? {} : value;
    on.set(preset, Object.fromEntries(QUALITY_PARAMS.filter((q) => q.preset === preset).map((q) => [q.name, given[q.name] ?? q.default])));
  }
  return on;
}

const lengthUpsamplingFields = z.strictObject({
  short_below: z.number().int().min(2).max(1 << 30).describe("documents shorter than this many tokens (EOS included) are downsampled"),
  keep_short: z.number().min(0).max(1).describe("the share of those kept, exactly (rounded to a whole document), chosen by a seeded key"),
});

export const sourceSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9][\w.-]*$/, "letters, digits, '_', '-', '.'"),
    weight: z.number().positive().describe("share of output tokens; weights are normalised over all sources"),
    hf: hubSource.optional(),
    local: localSource.optional(),
    text_column: z.string().min(1).optional(),
    text_template: z.string().min(1).optional().describe("joins columns, e.g. '{question}\\n{answer}'"),
    max_epochs: z.number().positive().max(MAX_EPOCHS, MAX_EPOCHS_MESSAGE).optional().describe("overrides the recipe's max_epochs for this source"),
    length_upsampling: z
      .union([z.literal(false), lengthUpsamplingFields.partial()])
      .optional()
      .describe("overrides the recipe's length_upsampling for this source (false: none here)"),
    filters: z
      .union([z.literal(false), z.array(z.enum(QUALITY_PRESETS))])
      .optional()
      .describe("which of the recipe's quality presets apply to this source (false: none; code should not pass prose rules); default: all"),
  })
  .superRefine((source, ctx) => {
    if (!source.hf === !source.local) {
      ctx.addIssue({ code: "custom", message: "give exactly one of 'hf' or 'local'", path: [] });
    }
    if (source.text_column && source.text_template) {
      ctx.addIssue({ code: "custom", message: "give 'text_column' or 'text_template', not both", path: ["text_template"] });
    }
  });

export const tokenizerSchema = z
  .strictObject({
    repo: repoId.optional(),
    revision: z.string().min(1).optional(),
    file: z.string().min(1).default("tokenizer.json"),
    path: z.string().min(1).optional().describe("a local tokenizer.json instead of a Hub repo"),
    add_bos: z.boolean().default(false),
  })
  .superRefine((tok, ctx) => {
    if (tok.path && (tok.repo || tok.revision)) {
      ctx.addIssue({ code: "custom", message: "give 'path' or 'repo'/'revision', not both", path: ["path"] });
    }
  });

export const DEFAULT_TOKENIZER_REPO = "deepseek-ai/deepseek-llm-7b-base";

export const recipeSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][\w.-]*$/, "a name of letters, digits, '_', '-' and '.', starting with a letter or digit (it names the output folder out/<name>)"),
  license: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.+-]*$/, "a license id as the Hub writes it, e.g. apache-2.0, cc-by-4.0, odc-by, other")
    .optional()
    .describe("the dataset card's license (the sources' own licenses still apply)"),
  seed: z.number().int().nonnegative().default(0),
  tokenizer: tokenizerSchema.default({ file: "tokenizer.json", add_bos: false }),
  sequence_length: z.number().int().min(2).default(4096),
  target_tokens: z.number().int().positive().optional().describe("total tokens in the output; default: the most no source must repeat beyond max_epochs to fill"),
  max_epochs: z.number().positive().max(MAX_EPOCHS, MAX_EPOCHS_MESSAGE).default(4),
  dedup: z
    .strictObject({
      enabled: z.boolean().default(true),
      normalization: z
        .enum(["nfc_trim", "nfc_trim_lower_collapse_whitespace"])
        .default("nfc_trim")
        .describe("nfc_trim: Unicode NFC, then leading/trailing whitespace removed; the second also lower-cases and collapses whitespace runs"),
      minhash: z
        .union([z.boolean(), minhashFields])
        .optional()
        .describe("near-duplicates by MinHash LSH after the exact dedup; true: ngram 5, 14 bands × 8 rows, seed 1 (datatrove's)"),
    })
    .default({ enabled: true, normalization: "nfc_trim" }),
  filters: z
    .strictObject({
      min_chars: z.number().int().nonnegative().default(1),
      max_chars: z.number().int().positive().optional(),
      min_tokens: z.number().int().nonnegative().default(0),
      max_tokens: z.number().int().positive().optional(),
      ...qualityPresetFields,
    })
    .default({ min_chars: 1, min_tokens: 0 }),
  length_upsampling: z
    .strictObject({
      short_below: lengthUpsamplingFields.shape.short_below.default(4096),
      keep_short: lengthUpsamplingFields.shape.keep_short.default(0.1),
      mode: z.enum(["per_source"]).default("per_source").describe("per_source: each source downsampled on its own, so it keeps its weight (Fu et al. 2024)"),
    })
    .optional()
    .describe("long-context mixtures: downsample short documents within each source, so long ones carry its share"),
  decontaminate: z
    .strictObject({
      tasks: z.array(z.string().min(1)).min(1).describe("benchmark tasks whose evaluation rows must not be trained on: shipped names (tasks/*.yaml) or paths relative to the recipe"),
      ngram: z.number().int().min(4).max(50).default(13).describe("a document sharing one n-gram of this many words with an evaluation row is removed (13, as GPT-3 and OLMo)"),
    })
    .optional(),
  sources: z.array(sourceSchema).min(1),
});

export type Recipe = z.infer<typeof recipeSchema>;
export type SourceSpec = z.infer<typeof sourceSchema>;
export type TokenizerSpec = z.infer<typeof tokenizerSchema>;

/** JSON Schema for editors (e.g. the YAML language server's `# yaml-language-server: $schema=`). */
export function recipeJsonSchema(): unknown {
  return z.toJSONSchema(recipeSchema, { io: "input", target: "draft-7" });
}
