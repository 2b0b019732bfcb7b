import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { MODEL_CONFIG_KEYS, ROPE_SCALINGS, type ModelConfig, type RopeScaling, type RopeScalingType } from "../native/addon.ts";
import { closest } from "../recipe/suggest.ts";
import { UsageError } from "../util/errors.ts";

const base = { ropeTheta: 10000, normEps: 1e-5, vocab: 102400, maxSeq: 4096 };

/** ChuXin-1.6B as in the report, and small ones for tests and experiments (same tokenizer, so vocab 102,400). */
export const PRESETS: Record<string, ModelConfig> = {
  "chuxin-1.6b": { ...base, nLayers: 24, hidden: 2048, nHeads: 32, ffn: 5632 },
  tiny: { ...base, nLayers: 2, hidden: 64, nHeads: 4, ffn: 172 },
  small: { ...base, nLayers: 4, hidden: 256, nHeads: 8, ffn: 688 },
  medium: { ...base, nLayers: 8, hidden: 512, nHeads: 8, ffn: 1376 },
};

function fromHf(hf: Record<string, unknown>, where: string): ModelConfig {
  const num = (key: string, fallback?: number): number => {
    const v = hf[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new UsageError(`${where}: '${key}' must be a number`);
    return v;
  };
  const heads = num("num_attention_heads");
  if (hf.num_key_value_heads !== undefined && hf.num_key_value_heads !== heads) {
    throw new UsageError(`${where}: grouped-query attention (num_key_value_heads ${hf.num_key_value_heads} ≠ ${heads}) is not supported`);
  }
  if (hf.tie_word_embeddings === true) throw new UsageError(`${where}: tied embeddings are not supported (the model has an untied LM head)`);
  if (hf.attention_bias === true || hf.mlp_bias === true) throw new UsageError(`${where}: biases are not supported`);
  // transformers ≥ 5 writes rope_parameters ({rope_type, rope_theta, factor, …}) where 4.x wrote rope_theta and rope_scaling.
  const params = hf.rope_parameters as Record<string, unknown> | undefined;
  if (params && typeof params === "object" && hf.rope_theta === undefined && params.rope_theta !== undefined) hf = { ...hf, rope_theta: params.rope_theta };
  const scalingDict = (hf.rope_scaling ?? params) as Record<string, unknown> | null | undefined;
  const ropeScaling = scalingDict && typeof scalingDict === "object" ? ropeScalingFromHf(scalingDict, hf, where) : undefined;
  return {
    ...(ropeScaling ? { ropeScaling } : {}),
    nLayers: num("num_hidden_layers"),
    hidden: num("hidden_size"),
    nHeads: heads,
    ffn: num("intermediate_size"),
    vocab: num("vocab_size"),
    maxSeq: num("max_position_embeddings"),
    ropeTheta: num("rope_theta", 10000),
    normEps: num("rms_norm_eps", 1e-5),
  };
}

/** Published defaults of the parameters a rope_scaling may leave out: YaRN's β (32, 1), Llama 3.1's frequency factors (1, 4). */
const SCALING_DEFAULTS = { lowFreqFactor: 1, highFreqFactor: 4, betaFast: 32, betaSlow: 1 };

/** rope_scaling / rope_parameters as our RopeScaling; undefined for the default (none); refused for kinds not implemented. */
function ropeScalingFromHf(d: Record<string, unknown>, hf: Record<string, unknown>, where: string): RopeScaling | undefined {
  const type = (d.rope_type ?? d.type ?? "default") as string;
  if (type === "default") return undefined;
  if (!(ROPE_SCALINGS as readonly string[]).includes(type)) {
    throw new UsageError(`${where}: RoPE scaling '${type}' is not supported (${ROPE_SCALINGS.join(", ")} are; dynamic NTK rescales at inference by each sequence's length, which training at one context does not reproduce)`);
  }
  const number = (key: string, fallback?: number): number => {
    const v = d[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new UsageError(`${where}: rope_scaling.${key} must be a number`);
    return v;
  };
  for (const key of ["attention_factor", "mscale", "mscale_all_dim"]) {
    if (d[key] !== undefined && d[key] !== null) throw new UsageError(`${where}: rope_scaling.${key} is not supported (YaRN's attention factor is taken as 0.1 ln(factor) + 1)`);
  }
  if (d.truncate === false) throw new UsageError(`${where}: rope_scaling.truncate false is not supported`);
  return {
    type: type as RopeScalingType,
    factor: number("factor"),
    originalMaxPositions: number("original_max_position_embeddings", number("max_position_embeddings", typeof hf.max_position_embeddings === "number" ? hf.max_position_embeddings : undefined)),
    lowFreqFactor: number("low_freq_factor", SCALING_DEFAULTS.lowFreqFactor),
    highFreqFactor: number("high_freq_factor", SCALING_DEFAULTS.highFreqFactor),
    betaFast: number("beta_fast", SCALING_DEFAULTS.betaFast),
    betaSlow: number("beta_slow", SCALING_DEFAULTS.betaSlow),
  };
}

/** A scaling of `type` by `factor` for a model pretrained at `originalMaxPositions`, with the published defaults. */
export function ropeScalingOf(type: RopeScalingType, factor: number, originalMaxPositions: number): RopeScaling {
  return { type, factor, originalMaxPositions, ...SCALING_DEFAULTS };
}

/** transformers' rope_scaling for ours: only the keys its type reads. */
function ropeScalingToHf(s: RopeScaling): Record<string, unknown> {
  if (s.type === "linear") return { rope_type: "linear", factor: s.factor };
  if (s.type === "yarn") return { rope_type: "yarn", factor: s.factor, original_max_position_embeddings: s.originalMaxPositions, beta_fast: s.betaFast, beta_slow: s.betaSlow };
  return { rope_type: "llama3", factor: s.factor, original_max_position_embeddings: s.originalMaxPositions, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor };
}

/** A Hugging Face LlamaForCausalLM config.json as our model config, checked. */
export function fromHfConfig(hf: Record<string, unknown>, where: string): ModelConfig {
  return validateModelConfig(fromHf(hf, where), where);
}

const MODEL_KEYS: readonly (keyof ModelConfig)[] = MODEL_CONFIG_KEYS;

export function validateModelConfig(c: ModelConfig, where: string): ModelConfig {
  const { ropeScaling, ...numbers } = c;
  for (const k of Object.keys(numbers)) {
    if (!MODEL_KEYS.includes(k as keyof ModelConfig)) {
      const hint = closest(k, [...MODEL_KEYS, "ropeScaling"]);
      throw new UsageError(`${where}: unknown key '${k}'${hint ? ` — did you mean '${hint}'?` : ""} (allowed: ${MODEL_KEYS.join(", ")}, ropeScaling)`);
    }
  }
  for (const k of MODEL_KEYS) if (!(k in c)) throw new UsageError(`${where}: missing '${k}'`);
  for (const [k, v] of Object.entries(numbers)) {
    if (typeof v !== "number" || !(v > 0)) throw new UsageError(`${where}: '${k}' must be a positive number`);
  }
  if (ropeScaling && !(ropeScaling.factor >= 1)) throw new UsageError(`${where}: the RoPE scaling factor must be 1 or more (got ${ropeScaling.factor})`);
  if (c.hidden % c.nHeads !== 0 || (c.hidden / c.nHeads) % 2 !== 0) {
    throw new UsageError(`${where}: hidden ${c.hidden} must split into ${c.nHeads} heads of an even size`);
  }
  return c;
}

/** A preset name, or a JSON/YAML file: our own keys, or a Hugging Face LlamaForCausalLM config.json. */
export async function resolveModelConfig(spec: string): Promise<{ name: string; config: ModelConfig }> {
  const preset = PRESETS[spec];
  if (preset) return { name: spec, config: preset };
  let text: string;
  try {
    text = await readFile(spec, "utf8");
  } catch {
    throw new UsageError(`--model ${spec}: neither a preset (${Object.keys(PRESETS).join(", ")}) nor a readable file`);
  }
  const parsed = (spec.endsWith(".json") ? JSON.parse(text) : parseYaml(text)) as Record<string, unknown>;
  const config = "num_hidden_layers" in parsed ? fromHf(parsed, spec) : ({ ...base, ...parsed } as unknown as ModelConfig);
  return { name: spec, config: validateModelConfig(config, spec) };
}

/** The Hugging Face config.json that makes `transformers` load our checkpoint as it is. */
export function hfConfig(c: ModelConfig, eosId: number, bosId: number): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: c.hidden,
    intermediate_size: c.ffn,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nHeads,
    vocab_size: c.vocab,
    max_position_embeddings: c.maxSeq,
    rope_theta: c.ropeTheta,
    ...(c.ropeScaling ? { rope_scaling: ropeScalingToHf(c.ropeScaling) } : {}),
    rms_norm_eps: c.normEps,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    bos_token_id: bosId,
    eos_token_id: eosId,
    torch_dtype: "float32",
    initializer_range: 0.02,
  };
}

/** Parameters, and training FLOPs per token (6N plus attention, for MFU). */
export function parameterCount(c: ModelConfig): number {
  const perLayer = 4 * c.hidden * c.hidden + 3 * c.hidden * c.ffn + 2 * c.hidden;
  return 2 * c.vocab * c.hidden + c.nLayers * perLayer + c.hidden;
}

/**
 * The model's positions for a run: `max_position_embeddings` stays unless the training context goes past it, which
 * needs a new RoPE base (`--rope-theta`, ABF) or `--force-positions`; then it becomes the context. Without either,
 * the default context is the data's sequence_length cut to the model's positions, as before.
 */
export function positionsFor(
  mc: ModelConfig,
  o: { context: number | null; sequenceLength: number; ropeTheta: number | null; ropeScaling: boolean; forcePositions: boolean },
): { maxSeq: number; context: number; problem?: string } {
  if (o.context !== null && (o.context < 2 || o.context > o.sequenceLength)) {
    return { maxSeq: mc.maxSeq, context: o.context, problem: `--context ${o.context}: must be between 2 and the data's sequence_length ${o.sequenceLength}` };
  }
  const extending = o.ropeTheta !== null || o.ropeScaling || o.forcePositions;
  const context = o.context ?? (extending ? o.sequenceLength : Math.min(o.sequenceLength, mc.maxSeq));
  if (context <= mc.maxSeq) return { maxSeq: mc.maxSeq, context };
  if (extending) return { maxSeq: context, context };
  return {
    maxSeq: mc.maxSeq,
    context,
    problem:
      `context ${context.toLocaleString("en-US")} is beyond the model's max_position_embeddings ${mc.maxSeq.toLocaleString("en-US")}: ` +
      `give a larger RoPE base with --rope-theta (e.g. ${Math.max(500_000, mc.ropeTheta * 10).toLocaleString("en-US")}, as ABF does) or a --rope-scaling ` +
      `(linear, yarn, llama3) to extend it, or --force-positions to train past it on the same base, or a smaller --context`,
  };
}

/**
 * The model a run trains, from the one it starts as: the run's RoPE base (--rope-theta) and scaling (--rope-scaling,
 * relative to the positions the model was first pretrained at), and more positions when the context goes past them
 * (positionsFor). The trainer and the plan's chain check both take it from here.
 */
export function modelForRun(
  mc: ModelConfig,
  o: { ropeTheta: number | null; ropeScaling: RopeScalingType | null; ropeFactor: number | null; context: number | null; sequenceLength: number; forcePositions: boolean },
): { model: ModelConfig; problem?: string; note?: string } {
  let model: ModelConfig = o.ropeTheta === null ? mc : { ...mc, ropeTheta: o.ropeTheta };
  if (o.ropeScaling) model = { ...model, ropeScaling: ropeScalingOf(o.ropeScaling, o.ropeFactor ?? 1, mc.ropeScaling?.originalMaxPositions ?? mc.maxSeq) };
  const positions = positionsFor(model, { context: o.context, sequenceLength: o.sequenceLength, ropeTheta: o.ropeTheta, ropeScaling: o.ropeScaling !== null, forcePositions: o.forcePositions });
  if (positions.problem) return { model, problem: positions.problem };
  if (positions.maxSeq === model.maxSeq) return { model };
  const rope = `RoPE θ ${model.ropeTheta}${model.ropeScaling ? `, ${model.ropeScaling.type} × ${model.ropeScaling.factor} of ${model.ropeScaling.originalMaxPositions}` : ""}`;
  return { model: { ...model, maxSeq: positions.maxSeq }, note: `max_position_embeddings ${model.maxSeq} → ${positions.maxSeq} (${rope})` };
}
