import { cpus } from "node:os";
import { z } from "zod";
import { ROPE_SCALINGS, type ModelConfig } from "../native/addon.ts";
import { DECAY_SHAPES, SCHEDULES } from "./schedule.ts";

/**
 * Every training option, declared once: its type, default and bounds (zod), its `--flag` help text, and what
 * `--resume` does with it. The CLI's flags, the resolved run_config.json and the resume rule are all derived
 * from this table; adding an option is one entry here plus the code that uses it.
 */
export interface OptionMeta {
  /** help text of the option's --flag (the key with '-' for '_'); absent: not a flag (set by the trainer) */
  describe?: string;
  /** on --resume: "fixed" keeps the run's recorded value (it changes the arithmetic); "new" takes the new one */
  onResume: "fixed" | "new";
  /** the flag's type where it differs from the value's (`--tokens 2T` is text, read into a number) */
  flagType?: "string";
}

const option = <T extends z.ZodType>(schema: T, meta: OptionMeta): T => schema.meta({ chuxin: meta }) as T;
const count = () => z.number().int().nonnegative();
const positive = () => z.number().int().positive();
// Upper bounds that no real run reaches (ChuXin: 575K steps of 4M tokens at 4,096, then 1M-token windows), so a
// typo is refused before anything is allocated instead of exhausting memory or running for ever.
const MAX_STEPS = 1_000_000_000;
const MAX_CONTEXT = 1 << 21;
/** tokens in one micro-batch (micro_batch × context): what a forward holds activations for */
export const MAX_MICRO_BATCH_TOKENS = 1 << 24;

export const modelConfigSchema = z.strictObject({
  nLayers: positive(),
  hidden: positive(),
  nHeads: positive(),
  ffn: positive(),
  vocab: positive(),
  maxSeq: positive(),
  ropeTheta: z.number().positive(),
  normEps: z.number().positive(),
  ropeScaling: z
    .strictObject({
      type: z.enum(ROPE_SCALINGS),
      factor: z.number().min(1),
      originalMaxPositions: positive(),
      lowFreqFactor: z.number().positive(),
      highFreqFactor: z.number().positive(),
      betaFast: z.number().positive(),
      betaSlow: z.number().positive(),
    })
    .optional(),
});

// The schema's keys are the native config's, checked here at compile time.
const sameKeys: [keyof z.infer<typeof modelConfigSchema>] extends [keyof ModelConfig] ? ([keyof ModelConfig] extends [keyof z.infer<typeof modelConfigSchema>] ? true : never) : never = true;
void sameKeys;

export const trainConfigSchema = z.strictObject({
  data: option(z.string().min(1), { describe: "a build's output folder", onResume: "fixed" }),
  out: option(z.string().min(1).default("runs/run"), { describe: "run folder", onResume: "fixed" }),
  model: option(z.string().min(1).default("tiny"), { describe: "preset (tiny, small, medium, chuxin-1.6b) or a JSON/YAML/HF config.json file", onResume: "fixed" }),
  model_config: option(modelConfigSchema, { onResume: "fixed" }),
  device: option(z.enum(["cpu", "cuda"]), { onResume: "fixed" }),
  threads: option(positive().max(4096).default(() => cpus().length), { describe: "CPU threads", onResume: "new" }),
  seed: option(count().default(0), { describe: "seeds the initial weights, the held-out split and the data order", onResume: "fixed" }),
  steps: option(positive().max(MAX_STEPS).default(100), { describe: "optimizer steps to train to (with --resume: the new total)", onResume: "new" }),
  tokens: option(positive().max(2 ** 53).nullable().default(null), {
    describe: "train to this many tokens instead of --steps (suffixes K M B T: 2T), rounded to whole steps of --global-batch-tokens and stated",
    onResume: "new",
    flagType: "string",
  }),
  save_every: option(count().max(MAX_STEPS).default(50), { describe: "write a checkpoint every K steps (and at the end; 0: only at the end)", onResume: "new" }),
  keep_last: option(positive().max(100_000).default(3), { describe: "checkpoints to keep; older ones are deleted", onResume: "new" }),
  micro_batch: option(positive().max(65_536).default(4), { describe: "sequences per forward/backward", onResume: "fixed" }),
  global_batch_tokens: option(count().max(2 ** 36).default(0), { describe: "tokens per optimizer step (0: one micro-batch)", onResume: "fixed" }),
  context: option(positive().max(MAX_CONTEXT).nullable().default(null), { describe: "train on windows of this many tokens of each sequence (default: the data's sequence_length)", onResume: "fixed" }),
  init_from: option(z.string().min(1).nullable().default(null), {
    describe: "start from these weights instead of random ones: a checkpoint folder, a run folder (its last checkpoint) or a Hub Llama repo org/name[@revision] (safetensors)",
    onResume: "fixed",
  }),
  init_optimizer: option(z.boolean().default(false), { describe: "with --init-from: also load its AdamW moments (a chuxin-data checkpoint has them), continuing their bias corrections", onResume: "fixed" }),
  /** set by the trainer: what --init-from read (the source, each file's sha256) */
  init_source: option(z.strictObject({ source: z.string(), files: z.record(z.string(), z.string()) }).nullable().default(null), { onResume: "fixed" }),
  /** set by the trainer: AdamW steps behind moments loaded with --init-optimizer */
  adam_step_offset: option(count().default(0), { onResume: "fixed" }),
  rope_theta: option(z.number().positive().max(1e12).nullable().default(null), {
    describe: "RoPE base for this run (ABF: raise it with the context, e.g. 10000 → 500000); written to config.json's rope_theta",
    onResume: "fixed",
  }),
  rope_scaling: option(z.enum(ROPE_SCALINGS).nullable().default(null), {
    describe: "scale RoPE's frequencies by --rope-factor as transformers' rope_scaling does: linear (position interpolation), yarn (YaRN, β 32/1) or llama3 (Llama 3.1's, low/high frequency factors 1/4), relative to the positions the model was pretrained at; written to config.json",
    onResume: "fixed",
  }),
  rope_factor: option(z.number().min(1).max(1e6).nullable().default(null), { describe: "with --rope-scaling: its factor (e.g. 4 for 4× the pretrained positions)", onResume: "fixed" }),
  force_positions: option(z.boolean().default(false), { describe: "allow --context beyond the model's max_position_embeddings without a new --rope-theta", onResume: "fixed" }),
  lr: option(z.number().positive().max(10).default(3e-4), { describe: "peak learning rate (AdamW)", onResume: "fixed" }),
  min_lr: option(z.number().nonnegative().max(10).default(3e-5), { describe: "learning rate at the end of the cosine decay", onResume: "fixed" }),
  warmup_steps: option(count().max(MAX_STEPS).default(10), { describe: "linear warmup steps", onResume: "fixed" }),
  schedule: option(z.enum(SCHEDULES).default("cosine"), {
    describe: "after warmup: cosine or linear decay to --min-lr at --decay-steps, constant, or wsd (stable at --lr, then a decay over --decay-fraction of the steps)",
    onResume: "fixed",
  }),
  decay_fraction: option(z.number().gt(0).max(1).default(0.1), { describe: "with --schedule wsd: the share of --decay-steps the final decay takes", onResume: "fixed" }),
  decay_shape: option(z.enum(DECAY_SHAPES).default("1-sqrt"), { describe: "with --schedule wsd: the decay's shape (1-sqrt as in Hägele et al.; linear; cosine)", onResume: "fixed" }),
  decay_steps: option(positive().max(MAX_STEPS).nullable().default(null), { describe: "the decay's end (default: --steps; kept on --resume unless given)", onResume: "new" }),
  weight_decay: option(z.number().nonnegative().max(10).default(0.1), { describe: "AdamW weight decay on the q/k/v/o, gate/up/down and LM-head matrices (never norms)", onResume: "fixed" }),
  decay_embeddings: option(z.boolean().default(false), { describe: "decay the token embedding too (Hugging Face's Trainer does; OLMo does not)", onResume: "fixed" }),
  beta1: option(z.number().min(0).lt(1).default(0.9), { describe: "AdamW β1", onResume: "fixed" }),
  beta2: option(z.number().min(0).lt(1).default(0.95), { describe: "AdamW β2", onResume: "fixed" }),
  adam_eps: option(z.number().positive().max(1).default(1e-8), { describe: "AdamW ε", onResume: "fixed" }),
  clip: option(z.number().nonnegative().max(1e6).default(1.0), { describe: "global gradient-norm clip (0: off)", onResume: "fixed" }),
  precision: option(z.enum(["bf16", "fp32"]).default("bf16"), { describe: "bf16: fp32 master weights, bf16 where the GPU stores bf16; fp32: exact", onResume: "fixed" }),
  doc_mask: option(z.boolean().default(true), { describe: "attention stays within documents (ends at EOS)", onResume: "fixed" }),
  reset_positions: option(z.boolean().default(true), { describe: "RoPE positions restart at each document", onResume: "fixed" }),
  mask_eos_loss: option(z.boolean().default(true), { describe: "the position whose input is EOS has no target", onResume: "fixed" }),
  recompute: option(z.boolean().default(false), {
    describe: "keep only each block's input and rerun the block in backward: activations of one block plus the residual stream, about a quarter more compute, the same numbers",
    onResume: "new",
  }),
  zero: option(z.number().int().min(0).max(1).default(1), {
    describe: "with several ranks: 1 shards the AdamW moments and fp32 master weights over the ranks (ZeRO-1: gradients reduce-scattered, the compute weights all-gathered); 0 all-reduces the gradients and every rank steps the whole model",
    onResume: "new",
  }),
  overlap: option(z.boolean().default(true), {
    describe: "with several ranks: reduce each gradient bucket while the backward goes on and gather each bucket of updated weights while the next forward goes on (--no-overlap: each after its compute, to measure what overlapping hides)",
    onResume: "new",
  }),
  context_parallel: option(positive().max(4096).default(1), {
    describe:
      "split every sequence over N ranks (ring attention, zigzag chunks: the context must be divisible by 2·N); the other ranks' factor is data parallelism, so world = data-parallel × N; for contexts whose activations one device cannot hold",
    onResume: "new",
  }),
  collectives: option(z.enum(["auto", "gloo", "nccl"]).default("auto"), {
    describe: "the collective library: auto is nccl on cuda and gloo on cpu; naming one runs the data-parallel path even on one rank (to check it, or measure its cost)",
    onResume: "new",
  }),
  dist_timeout: option(positive().max(86_400).default(600), { describe: "with several ranks: seconds a rank waits for the others (joining, each collective) before the run stops", onResume: "new" }),
  eval_every: option(count().max(MAX_STEPS).default(50), { describe: "held-out loss every K steps (0: never)", onResume: "new" }),
  eval_sequences: option(count().max(1_000_000).default(8), { describe: "held-out windows for evaluation", onResume: "fixed" }),
  eval_tasks: option(z.string().default(""), { describe: "benchmarks to run during training, comma-separated (tasks/*.yaml names or files); see --eval-tasks-every", onResume: "new" }),
  eval_tasks_every: option(count().max(MAX_STEPS).default(0), { describe: "run --eval-tasks every K steps and at the end (0: never)", onResume: "new" }),
  eval_limit: option(count().max(MAX_STEPS).default(0), { describe: "with --eval-tasks: rows per task (or subject) at most (0: all)", onResume: "new" }),
});

export type TrainConfig = z.infer<typeof trainConfigSchema>;

/** Bounds between options, checked with the rest before any work. */
function crossChecks(config: TrainConfig): string[] {
  const problems: string[] = [];
  if ((config.rope_scaling === null) !== (config.rope_factor === null)) {
    problems.push(config.rope_scaling ? `--rope-scaling ${config.rope_scaling} needs --rope-factor F (e.g. 4 for 4× the pretrained positions)` : `--rope-factor ${config.rope_factor} needs --rope-scaling linear, yarn or llama3`);
  }
  const context = config.context ?? config.model_config.maxSeq;
  const cp = config.context_parallel;
  if (cp > 1 && context % (2 * cp) !== 0) {
    const fit = Math.floor(context / (2 * cp)) * 2 * cp;
    problems.push(`--context-parallel ${cp} cuts each sequence into ${2 * cp} equal chunks, and the context ${context.toLocaleString("en-US")} does not divide by ${2 * cp}: use a context of ${fit.toLocaleString("en-US")} or ${(fit + 2 * cp).toLocaleString("en-US")}`);
  }
  if (cp > 1 && config.eval_tasks) {
    problems.push(`--eval-tasks reads logits of whole sequences on one rank, and --context-parallel ${cp} splits them: run \`chuxin-data eval --tasks\` on a checkpoint instead`);
  }
  if (config.micro_batch * context > MAX_MICRO_BATCH_TOKENS) {
    problems.push(
      `--micro-batch ${config.micro_batch}: ${config.micro_batch} × ${context.toLocaleString("en-US")} tokens is over ${MAX_MICRO_BATCH_TOKENS.toLocaleString("en-US")} tokens a micro-batch; ` +
        `use a smaller --micro-batch and reach the step's tokens with --global-batch-tokens (gradient accumulation)`,
    );
  }
  return problems;
}
export type TrainKey = keyof TrainConfig;

export function optionMeta(key: TrainKey): OptionMeta {
  return (trainConfigSchema.shape[key].meta() as { chuxin: OptionMeta }).chuxin;
}

/** The options --resume may change; every other one keeps the run's recorded value. */
export const RESUMABLE: ReadonlySet<TrainKey> = new Set((Object.keys(trainConfigSchema.shape) as TrainKey[]).filter((k) => optionMeta(k).onResume === "new"));

export const flagOf = (key: string): string => key.replace(/_/g, "-");

export interface FlagSpec {
  key: TrainKey;
  flag: string;
  describe: string;
  type: "number" | "boolean" | "string";
  choices?: string[];
  default?: unknown;
  required: boolean;
}

/** The command-line flags, one per option that has help text, with the type and default its schema gives. */
export function trainFlags(): FlagSpec[] {
  const out: FlagSpec[] = [];
  for (const key of Object.keys(trainConfigSchema.shape) as TrainKey[]) {
    const meta = optionMeta(key);
    if (!meta.describe) continue;
    let schema: any = trainConfigSchema.shape[key];
    let fallback: unknown;
    let required = true;
    for (;;) {
      const def = schema._zod.def;
      if (def.type === "default") {
        fallback = typeof def.defaultValue === "function" ? def.defaultValue() : def.defaultValue;
        required = false;
      } else if (def.type === "nullable" || def.type === "optional") required = false;
      else break;
      schema = def.innerType;
    }
    const def = schema._zod.def;
    const type = meta.flagType ?? (def.type === "enum" ? "string" : (def.type as FlagSpec["type"]));
    out.push({
      key,
      flag: flagOf(key),
      describe: meta.describe,
      type,
      ...(def.type === "enum" ? { choices: Object.values(def.entries as Record<string, string>) } : {}),
      ...(fallback !== undefined && fallback !== null ? { default: fallback } : {}),
      required,
    });
  }
  return out;
}

const TOKEN_SUFFIX: Record<string, number> = { "": 1, K: 1e3, M: 1e6, B: 1e9, G: 1e9, T: 1e12 };

/** A token count as people write it: 2T, 1.5B, 500M, 4096, 2e12; undefined when it is none. */
export function parseTokenCount(text: string | number): number | undefined {
  if (typeof text === "number") return Number.isFinite(text) ? text : undefined;
  const m = text.trim().match(/^(\d+(?:\.\d+)?(?:e\d+)?)\s*([KMBGT]?)$/i);
  if (!m) return undefined;
  const value = Math.round(Number(m[1]) * TOKEN_SUFFIX[m[2]!.toUpperCase()]!);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Checks a resolved config, naming the flag and the problem. */
export function parseTrainConfig(raw: Record<string, unknown>): { ok: true; config: TrainConfig } | { ok: false; problems: string[] } {
  const r = trainConfigSchema.safeParse(raw);
  if (r.success) {
    const problems = crossChecks(r.data);
    return problems.length === 0 ? { ok: true, config: r.data } : { ok: false, problems };
  }
  return {
    ok: false,
    problems: r.error.issues.map((i) => {
      const key = String(i.path[0] ?? "");
      const value = raw[key];
      return `--${flagOf(key)}${value === undefined ? "" : ` ${JSON.stringify(value)}`}: ${i.message}`;
    }),
  };
}
