import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { MODEL_CONFIG_KEYS, type ModelConfig } from "../native/addon.ts";
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
  // transformers ≥ 5 writes rope_parameters ({rope_type, rope_theta, …}) where 4.x wrote rope_theta and rope_scaling.
  const params = hf.rope_parameters as { rope_type?: string; rope_theta?: number } | undefined;
  if (params && typeof params === "object") {
    if (params.rope_type !== undefined && params.rope_type !== "default") throw new UsageError(`${where}: rope_parameters.rope_type '${params.rope_type}' is not supported (only 'default' RoPE with its base)`);
    if (hf.rope_theta === undefined && params.rope_theta !== undefined) hf = { ...hf, rope_theta: params.rope_theta };
  }
  if (hf.rope_scaling !== undefined && hf.rope_scaling !== null) {
    throw new UsageError(`${where}: rope_scaling ${JSON.stringify(hf.rope_scaling)} is not supported (only RoPE with its base, rope_theta)`);
  }
  return {
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

/** A Hugging Face LlamaForCausalLM config.json as our model config, checked. */
export function fromHfConfig(hf: Record<string, unknown>, where: string): ModelConfig {
  return validateModelConfig(fromHf(hf, where), where);
}

const MODEL_KEYS: readonly (keyof ModelConfig)[] = MODEL_CONFIG_KEYS;

export function validateModelConfig(c: ModelConfig, where: string): ModelConfig {
  for (const k of Object.keys(c)) {
    if (!MODEL_KEYS.includes(k as keyof ModelConfig)) {
      const hint = closest(k, MODEL_KEYS);
      throw new UsageError(`${where}: unknown key '${k}'${hint ? ` — did you mean '${hint}'?` : ""} (allowed: ${MODEL_KEYS.join(", ")})`);
    }
  }
  for (const k of MODEL_KEYS) if (!(k in c)) throw new UsageError(`${where}: missing '${k}'`);
  for (const [k, v] of Object.entries(c)) {
    if (typeof v !== "number" || !(v > 0)) throw new UsageError(`${where}: '${k}' must be a positive number`);
  }
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
  o: { context: number | null; sequenceLength: number; ropeTheta: number | null; forcePositions: boolean },
): { maxSeq: number; context: number; problem?: string } {
  if (o.context !== null && (o.context < 2 || o.context > o.sequenceLength)) {
    return { maxSeq: mc.maxSeq, context: o.context, problem: `--context ${o.context}: must be between 2 and the data's sequence_length ${o.sequenceLength}` };
  }
  const extending = o.ropeTheta !== null || o.forcePositions;
  const context = o.context ?? (extending ? o.sequenceLength : Math.min(o.sequenceLength, mc.maxSeq));
  if (context <= mc.maxSeq) return { maxSeq: mc.maxSeq, context };
  if (extending) return { maxSeq: context, context };
  return {
    maxSeq: mc.maxSeq,
    context,
    problem:
      `context ${context.toLocaleString("en-US")} is beyond the model's max_position_embeddings ${mc.maxSeq.toLocaleString("en-US")}: ` +
      `give a larger RoPE base with --rope-theta (e.g. ${Math.max(500_000, mc.ropeTheta * 10).toLocaleString("en-US")}, as ABF does) to extend it, ` +
      `or --force-positions to train past it on the same base, or a smaller --context`,
  };
}
