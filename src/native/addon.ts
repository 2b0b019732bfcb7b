import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { RuntimeFailure } from "../util/errors.ts";

/** The model's configuration, as cx_config holds it (the binding reads these keys, and no other). */
export const MODEL_CONFIG_KEYS = ["nLayers", "hidden", "nHeads", "ffn", "vocab", "maxSeq", "ropeTheta", "normEps"] as const;
/** The keys that set the tensors' shapes: a checkpoint loads into a model only when these are equal. */
export const SHAPE_KEYS = ["nLayers", "hidden", "nHeads", "ffn", "vocab"] as const satisfies readonly (typeof MODEL_CONFIG_KEYS)[number][];
/** RoPE's scalings past the base, as transformers' rope_scaling names them (cx_rope_scaling). */
export const ROPE_SCALINGS = ["linear", "yarn", "llama3"] as const;
export type RopeScalingType = (typeof ROPE_SCALINGS)[number];
export interface RopeScaling {
  type: RopeScalingType;
  factor: number;
  /** the positions the model was pretrained at (yarn, llama3) */
  originalMaxPositions: number;
  /** llama3: wavelengths past original / low are divided by factor, those under original / high kept */
  lowFreqFactor: number;
  highFreqFactor: number;
  /** yarn: the ramp between the dimensions turning beta_slow and beta_fast times within original */
  betaFast: number;
  betaSlow: number;
}
export type ModelConfig = Record<(typeof MODEL_CONFIG_KEYS)[number], number> & { ropeScaling?: RopeScaling };
/** The config as the binding reads it: the scaling's type as its cx_rope_type number. */
export type NativeModelConfig = Record<(typeof MODEL_CONFIG_KEYS)[number], number> & { ropeScaling?: Omit<RopeScaling, "type"> & { type: number } };

export function nativeModelConfig(c: ModelConfig): NativeModelConfig {
  const { ropeScaling, ...base } = c;
  return ropeScaling ? { ...base, ropeScaling: { ...ropeScaling, type: ROPE_SCALINGS.indexOf(ropeScaling.type) + 1 } } : base;
}

export interface RunOptions {
  precision: 0 | 1; // 0 bf16 mixed precision, 1 fp32
  docMask: 0 | 1;
  resetPositions: 0 | 1;
  maskEosLoss: 0 | 1;
  eosId: number;
  /** 1: keep only each block's input and rerun the block in backward (less memory, same results) */
  recompute: 0 | 1;
}

/**
 * AdamW hyperparameters as cx_adamw holds them. The binding requires every key and refuses unknown ones (defaults
 * live here, in TypeScript, only); decayEmbeddings 1 decays the token embedding too.
 */
export interface AdamwOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  decayEmbeddings: 0 | 1;
}

export const TensorKind = { param: 0, grad: 1, adamM: 2, adamV: 3 } as const;

export interface NativeModel {
  init(seed: number): void;
  tensors(): { name: string; rows: number; cols: number }[];
  getTensor(kind: number, index: number): Float32Array;
  setTensor(kind: number, index: number, data: Float32Array): void;
  /** reduceGradients: the step's last micro-batch of a data-parallel model reduces each gradient bucket as soon as the
   * backward has finished it, overlapping the rest (cx_forward_backward). */
  forwardBackward(tokens: Int32Array, B: number, T: number, options: RunOptions, lossScale: number, reduceGradients?: boolean): Promise<{ lossSum: number; count: number }>;
  forwardLosses(tokens: Int32Array, B: number, T: number, options: RunOptions): Promise<Float32Array>;
  lastLogits(tokens: Int32Array, B: number, T: number, options: RunOptions): Promise<Float32Array>;
  /** Logits [positions.length][vocab] at flat positions b*T+t of the batch (cx_forward_logits_at). */
  logitsAt(tokens: Int32Array, B: number, T: number, options: RunOptions, positions: Int32Array): Promise<Float32Array>;
  /** Starts a generated sequence of at most maxTokens tokens with a key/value cache (cx_decode_reset). */
  decodeReset(maxTokens: number): void;
  /** Runs new tokens after those cached; resolves to the logits [vocab] after the last one (cx_decode_step). */
  decodeStep(tokens: Int32Array, options: RunOptions): Promise<Float32Array>;
  zeroGrad(): void;
  gradNorm(): Promise<number>;
  adamwStep(hp: AdamwOptions & { gradScale: number }): Promise<void>;
  /** Global-norm clipping and AdamW on the backend, with one read-back: resolves to the gradient norm. When it is not
   * finite nothing moved. maxNorm <= 0: no clipping. */
  clipAdamwStep(hp: AdamwOptions, maxNorm: number): Promise<number>;
  /** Attaches the model to a communicator (cx_model_data_parallel): zero 1 shards the AdamW moments (ZeRO-1), 0
   * all-reduces. The moments are zeroed; from then on clipAdamwStep and getTensor of the moments are collective. */
  dataParallel(comm: Communicator, zero: 0 | 1): void;
  /**
   * Splits every sequence over the ring comm's topology puts this rank in (Communicator.contextParallel; zigzag
   * chunks, ring attention). Each member passes the whole rows; forwardBackward gives its own tokens' loss sum and
   * count, forwardLosses its positions' losses in place and 0 at the others (targetMask with the same comm says
   * which). Generation and logits are refused. comm null: a ring of one.
   */
  contextParallel(comm: Communicator | null): void;
  /** Collective: whether every rank holds the same fp32 weights bit for bit, and this rank's 64-bit digest of them. */
  replicasIdentical(): Promise<{ identical: boolean; digest: string }>;
  backend(): string;
  /** What RoPE rotates by: the inverse frequencies [head size / 2] and the scale of cos and sin (YaRN's attention factor). */
  ropeFrequencies(): { invFreq: Float64Array; scale: number };
  /** Backend memory held now, in bytes: weights + gradients + AdamW state, and activations (with their gradients). */
  memory(): { states: number; activations: number };
  /** Activation memory a micro-batch of `tokens` tokens needs on this backend (linear in tokens); precision 0 bf16, 1 fp32. */
  activationBytes(tokens: number, precision: 0 | 1, recompute: 0 | 1): number;
  /** The device's free and total memory in bytes; null where the backend cannot tell (the CPU: ask the OS). */
  deviceMemory(): { free: number; total: number } | null;
  dispose(): void;
}

/** cx_comm_options: every key required. */
export interface CommOptions {
  /** gloo reduces host memory over TCP; nccl the GPU memory of `device` (libnccl.so.2 found at run time, or CHUXIN_NCCL) */
  library: "gloo" | "nccl";
  rank: number;
  world: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  /** nccl: the CUDA device ordinal of this rank's model; gloo: -1 */
  device: number;
}

/** The world's shape (native comm/topology.h): rings of `ringSize` adjacent ranks share each sequence, and data
 * parallelism runs over the rings. The native side owns the arithmetic; these are its answers. */
export interface Topology {
  world: number;
  rank: number;
  ringSize: number;
  /** this rank's member index in its ring */
  ringIndex: number;
  /** which ring (data-parallel share) this rank's is, of how many */
  dataRank: number;
  dataRanks: number;
}

/**
 * A joined group of ranks (cx_comm); every call is collective but contextParallel and topology, which are local
 * (each rank sets the same ring size before attaching a model). Dispose after the models attached to it.
 */
export interface Communicator {
  /** Shapes the world into rings of `ringSize` (1 until set); throws, with the fix, when it does not divide the world. */
  contextParallel(ringSize: number): void;
  topology(): Topology;
  /** Sums the values over the ranks, in place; resolves to the same array. */
  allReduce(values: Float64Array): Promise<Float64Array>;
  /** Root's bytes into every rank's array (same length everywhere). */
  broadcast(bytes: Uint8Array, root: number): Promise<Uint8Array>;
  barrier(): Promise<void>;
  library(): string;
  dispose(): void;
}

/** qualityCheckAndHash's per-text MinHash states (native/src/binding/text_binding.cpp declares the same). */
export const HASH_NOT_DONE = 0;
export const HASH_KEYS = 1;
export const HASH_NO_WORDS = 2;

export interface Addon {
  /** Resolves once every rank of the world has joined through MASTER_ADDR:MASTER_PORT, or rejects after the timeout. */
  joinCommunicator(options: CommOptions): Promise<Communicator>;
  Model: new (config: NativeModelConfig, backend: string, threads: number) => NativeModel;
  /** 1 where a position of tokens [B][T] has a target under these options (the model's own rule, cx_target_mask)
   * and, under comm's rings of more than one rank, this rank holds it. */
  targetMask(tokens: Int32Array, B: number, T: number, options: RunOptions, comm?: Communicator): Uint8Array;
  /** A world's topology without a communicator (one process); throws, with the fix, when ringSize does not divide it. */
  topology(world: number, rank: number, ringSize: number): Topology;
  /**
   * MinHash LSH band keys (cx_minhash_bands) of texts in NFKC and lower case where they hold non-ASCII
   * (near-dedup-text.ts prepareForShingles), as strings or UTF-8 bytes: text i's at keys[i * bands ..];
   * shingled[i] is 0 for a text with no words. The same keys for any thread count.
   */
  minhashBands(texts: (string | Uint8Array)[], spec: { ngram: number; bands: number; rows: number; seed: number }, threads: number): Promise<{ keys: BigUint64Array; shingled: Uint8Array }>;
  /** The shingle Jaccard of each pair (a[i], b[i]) of texts prepared the same way (cx_shingle_jaccard), as strings or UTF-8 bytes. */
  shingleJaccard(a: (string | Uint8Array)[], b: (string | Uint8Array)[], spec: { ngram: number; seed: number }, threads: number): Promise<Float64Array>;
  /**
   * Quality filters (cx_quality_check): for each text, 0 when it passes the presets of its mask (bits of
   * QUALITY_PRESET_BITS), else 1 + the index of the first rule it fails; params in the table's order.
   */
  qualityCheck(texts: (string | Uint8Array)[], presets: Uint8Array, params: Float64Array, threads: number): Promise<Uint16Array>;
  /**
   * qualityCheck, and in the same call the MinHash band keys (as minhashBands) of the texts that pass and are all
   * ASCII, which need no NFKC: hashed[i] is HASH_KEYS, HASH_NO_WORDS or HASH_NOT_DONE. A text that passed but was
   * left HASH_NOT_DONE holds non-ASCII and goes through prepareForShingles and minhashBands. Texts are strings or
   * their UTF-8 bytes.
   */
  qualityCheckAndHash(
    texts: (string | Uint8Array)[],
    presets: Uint8Array,
    params: Float64Array,
    threads: number,
    spec: { ngram: number; bands: number; rows: number; seed: number },
  ): Promise<{ rules: Uint16Array; keys: BigUint64Array; hashed: Uint8Array }>;
  /** The C API's parameter and rule tables (src/pipeline/stages/quality-rules.ts declares the same). */
  qualityTable(): { params: { name: string; default: number }[]; rules: string[] };
  cpuKernel: string;
  cudaCompiled: boolean;
  /** CUDA devices this process sees (after CUDA_VISIBLE_DEVICES): 0 with no usable driver, -1 in a build without CUDA. */
  cudaDeviceCount(): number;
  /** SIGKILL this process when its parent ends: 1 when parentPid is still the parent, 0 when it is gone, -1 where unsupported. */
  dieWithParent(parentPid: number): number;
  /** JSON: what the addon was built with ({cuda, cuda_gencode, gloo}). */
  buildInfo(): string;
  /** Tries to load a run-time library: the file and version when found, else where it looked and why not. */
  probeLibrary(name: "nccl" | "cublaslt"): { found: boolean; detail: string };
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
let cached: Addon | undefined;

/** Loads the addon that `npm install` built with cmake-js. */
export function loadAddon(): Addon {
  if (cached) return cached;
  const candidates = [join(root, "native", "build", "Release", "chuxin.node"), join(root, "native", "build", "Debug", "chuxin.node")];
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    throw new RuntimeFailure(`the native addon is not built (looked for ${candidates[0]}); run 'npm install' (it needs g++ and cmake) or 'npm run build:native'`);
  }
  cached = createRequire(import.meta.url)(path) as Addon;
  return cached;
}

/** Wraps native errors (which carry a CX_* code) as runtime failures with the message intact. */
export async function native<T>(what: string, call: () => Promise<T> | T): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new RuntimeFailure(`${what}: ${(error as Error).message}${code ? ` [${code}]` : ""}`, { cause: error });
  }
}
