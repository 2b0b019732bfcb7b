/** File names inside a build's output folder, shared by build, verify, inspect and train. */
export const MANIFEST = "manifest.json";
export const LOCK = "recipe.lock.json";
export const WORK_DIR = ".work";

export function shardName(index: number): string {
  return `shard-${String(index).padStart(5, "0")}.npy`;
}

export function docIndexName(index: number): string {
  return `shard-${String(index).padStart(5, "0")}.docs.parquet`;
}

/** The build's copy of its tokenizer.json, so a build folder copied elsewhere decodes and trains without the Hub. */
export const BUILD_TOKENIZER = "tokenizer.json";
export const DEFAULT_MAX_SHARD_BYTES = 1 << 30;
/** --max-shard-bytes' bounds: below 1 MB a build is thousands of tiny files; above 1 TiB no filesystem copy is sane. */
export const MIN_SHARD_BYTES = 1_000_000;
export const MAX_SHARD_BYTES = 2 ** 40;
