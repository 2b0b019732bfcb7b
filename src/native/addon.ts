import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { RuntimeFailure } from "../util/errors.ts";

export interface ModelConfig {
  nLayers: number;
  hidden: number;
  nHeads: number;
  ffn: number;
  vocab: number;
  maxSeq: number;
  ropeTheta: number;
  normEps: number;
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
  forwardBackward(tokens: Int32Array, B: number, T: number, options: RunOptions, lossScale: number): Promise<{ lossSum: number; count: number }>;
  forwardLosses(tokens: Int32Array, B: number, T: number, options: RunOptions): Promise<Float32Array>;
  lastLogits(tokens: Int32Array, B: number, T: number, options: RunOptions): Promise<Float32Array>;
  zeroGrad(): void;
  gradNorm(): Promise<number>;
  adamwStep(hp: AdamwOptions & { gradScale: number }): Promise<void>;
  /** Global-norm clipping and AdamW on the backend, with one read-back: resolves to the gradient norm. When it is not
   * finite nothing moved. maxNorm <= 0: no clipping. */
  clipAdamwStep(hp: AdamwOptions, maxNorm: number): Promise<number>;
  backend(): string;
  /** Backend memory held now, in bytes: weights + gradients + AdamW state, and activations (with their gradients). */
  memory(): { states: number; activations: number };
  dispose(): void;
}

export interface Addon {
  Model: new (config: ModelConfig, backend: string, threads: number) => NativeModel;
  cpuKernel: string;
  cudaCompiled: boolean;
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
