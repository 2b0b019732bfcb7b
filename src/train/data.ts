import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Manifest } from "../shards/manifest.ts";
import { readManifest } from "../shards/manifest-file.ts";
import { NpyFormatError, readNpyInfo, type NpyInfo } from "../shards/npy.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { keyedHash64 } from "../util/hash.ts";
import { loadAddon, type Communicator, type RunOptions } from "../native/addon.ts";

/** mulberry32: a small seeded PRNG, identical on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function permutation(n: number, ...key: (string | number)[]): Uint32Array {
  const rand = mulberry32(Number(keyedHash64(...key) & 0xffffffffn));
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}

interface Shard {
  path: string;
  info: NpyInfo;
  first: number; // global index of its first sequence
}

/**
 * The build's shards as training windows: each `sequence_length` sequence gives floor(L / context)
 * windows. A seeded permutation holds out the first `evalWindows` for evaluation; training walks the
 * rest in a fresh seeded order each epoch, so the data position is a pure function of the step.
 */
export class TokenData {
  private handles = new Map<string, FileHandle>();
  private orders = new Map<number, Uint32Array>();
  readonly evalWindows: Uint32Array;
  readonly trainWindows: Uint32Array;

  private constructor(
    readonly outDir: string,
    readonly manifest: Manifest,
    private readonly shards: Shard[],
    readonly context: number,
    readonly seed: number,
    evalCount: number,
  ) {
    const all = permutation(this.totalWindows, "eval-split", seed);
    if (evalCount >= all.length) throw new UsageError(`--eval-sequences ${evalCount} leaves no training data (the build has ${all.length} windows of ${context} tokens)`);
    this.evalWindows = all.slice(0, evalCount);
    this.trainWindows = all.slice(evalCount);
  }

  get windowsPerSequence(): number {
    return Math.floor(this.manifest.sequence_length / this.context);
  }

  get totalWindows(): number {
    return this.manifest.total_sequences * this.windowsPerSequence;
  }

  static async open(outDir: string, options: { context?: number; seed: number; evalWindows: number; modelContext: number; modelVocab: number }): Promise<TokenData> {
    const manifest = await readManifest(outDir);
    const L = manifest.sequence_length;
    const context = options.context ?? Math.min(L, options.modelContext);
    if (!Number.isInteger(context) || context < 2 || context > L) throw new UsageError(`--context ${context}: must be between 2 and the data's sequence_length ${L}`);
    if (context > options.modelContext) {
      throw new UsageError(`the training context ${context} is longer than the model's context ${options.modelContext}; pass --context ${options.modelContext} or a model with a longer context`);
    }
    const vocab = manifest.tokenizer.vocab_size ?? manifest.tokenizer.eos_id + 1;
    if (vocab > options.modelVocab) {
      throw new UsageError(`the data's tokenizer has ${vocab} token ids but the model's vocabulary is ${options.modelVocab}; use a model with vocab_size ≥ ${vocab}`);
    }
    const shards: Shard[] = [];
    let first = 0;
    for (const s of manifest.shards) {
      const path = join(outDir, s.path);
      let info: NpyInfo;
      try {
        info = await readNpyInfo(path);
      } catch (error) {
        if (error instanceof NpyFormatError) throw new UsageError(`${error.message}; rebuild the data with 'chuxin-data build'`);
        throw new RuntimeFailure(`${path}: cannot be read (${(error as Error).message})`);
      }
      if (info.cols !== L || info.rows !== s.sequences) {
        throw new UsageError(`${path}: shape (${info.rows}, ${info.cols}) disagrees with the manifest (${s.sequences}, ${L}); run 'chuxin-data verify'`);
      }
      shards.push({ path, info, first });
      first += s.sequences;
    }
    if (first === 0) throw new UsageError(`${outDir}: the build holds no sequences`);
    return new TokenData(outDir, manifest, shards, context, options.seed, options.evalWindows);
  }

  /** The training window for the k-th sample (0-based) since the start of training. */
  trainWindow(k: number): number {
    const n = this.trainWindows.length;
    const epoch = Math.floor(k / n);
    let order = this.orders.get(epoch);
    if (!order) {
      order = permutation(n, "train-order", this.seed, epoch);
      this.orders.clear();
      this.orders.set(epoch, order);
    }
    return this.trainWindows[order[k % n]!]!;
  }

  /** Reads windows into one [B][context] batch, checking every id against the vocabulary. */
  async read(windows: ArrayLike<number>, vocab: number): Promise<Int32Array> {
    const T = this.context;
    const out = new Int32Array(windows.length * T);
    for (let b = 0; b < windows.length; b++) {
      const w = windows[b]!;
      const sequence = Math.floor(w / this.windowsPerSequence);
      const offsetInSequence = (w % this.windowsPerSequence) * T;
      const shard = this.shards.findLast((s) => s.first <= sequence)!;
      const handle = await this.handle(shard.path);
      const bytes = Buffer.alloc(T * 4);
      const position = shard.info.dataOffset + ((sequence - shard.first) * shard.info.cols + offsetInSequence) * 4;
      const { bytesRead } = await handle.read(bytes, 0, bytes.length, position);
      if (bytesRead !== bytes.length) throw new RuntimeFailure(`${shard.path}: short read at sequence ${sequence}; run 'chuxin-data verify'`);
      for (let t = 0; t < T; t++) {
        const id = bytes.readUInt32LE(4 * t);
        if (id >= vocab) throw new UsageError(`${shard.path}: sequence ${sequence - shard.first} holds token id ${id}, outside the model's vocabulary of ${vocab}`);
        out[b * T + t] = id;
      }
    }
    return out;
  }

  private async handle(path: string): Promise<FileHandle> {
    let h = this.handles.get(path);
    if (!h) {
      h = await open(path, "r");
      this.handles.set(path, h);
    }
    return h;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.close();
    this.handles.clear();
  }
}

/**
 * 1 where a position has a target: the native model's rule over the batch's layout (cx_target_mask), so the counts
 * here match its losses. With a communicator whose rings hold more than one rank, only this rank's positions.
 */
export function targetMask(tokens: Int32Array, B: number, T: number, options: RunOptions, comm?: Communicator): Uint8Array {
  return loadAddon().targetMask(tokens, B, T, options, comm);
}

export function countTargets(tokens: Int32Array, B: number, T: number, options: RunOptions, comm?: Communicator): number {
  return targetMask(tokens, B, T, options, comm).reduce((a, b) => a + b, 0);
}

/** Sum and count of the losses at positions with a target; a NaN there stays NaN. */
export function maskedLossSum(losses: Float32Array, mask: Uint8Array): { sum: number; count: number } {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < losses.length; i++) if (mask[i]) (sum += losses[i]!), count++;
  return { sum, count };
}
