import type { Recipe } from "../recipe/schema.ts";
import { RuntimeFailure } from "../util/errors.ts";
import { formatSize } from "../util/size.ts";
import type { ResolvedSource } from "./resolve.ts";

/**
 * What a build will hold in OUT/.work before it has read a row, from the input files' sizes alone. The ratios lean
 * high for most text (a refusal can be overridden: --no-disk-check; after dedup the text's size is exact):
 * - text per byte of input: JSON lines and plain text hold their text and a little around it (1); a compressed
 *   file (gzip, parquet) expands about three times;
 * - corpus.duckdb holds the text until it is tokenised: measured 0.94 of the JSON lines' bytes on the synthetic
 *   corpus of bench/build-memory.sh, whose random letters compress badly (prose compresses better);
 * - the token chunks hold 4 bytes a token, at 2 bytes of text a token (DeepSeek's tokenizer on that corpus; English
 *   prose is nearer 4, so this overstates it);
 * - the shards are staged in .work before they move out: 4 bytes a token of the mixture.
 * Measured on the real corpora in ../shared (bench/disk-ratios.ts): 2.39 (Chinese poetry) to 3.37 (English prose)
 * bytes of text a token, so the chunks are overstated 1.2 to 1.7 times; compressed files held 1.96 (parquet) to 3.44
 * (code, jsonl.gz) bytes of text per byte. With both, the token chunks' estimate was 1.28 to 2.25 times what they
 * came to: never under.
 */
export const TEXT_PER_INPUT_BYTE = { plain: 1, compressed: 3 } as const;
export const TEXT_BYTES_PER_TOKEN = 2;

export interface WorkEstimate {
  /** input files and their bytes */
  files: number;
  inputBytes: number;
  /** text the inputs hold, and what each phase keeps in .work */
  textBytes: number;
  corpusDbBytes: number;
  tokenBytes: number;
  shardBytes: number;
  /** the most .work holds at once: text and tokens while tokenising, or tokens and shards while packing */
  peakBytes: number;
}

function compressed(path: string): boolean {
  return /\.(gz|parquet|zst|bz2|xz)$/i.test(path);
}

/**
 * The estimate for the files this build reads. `withShards`: a build packs shards; a partition (whose tokens are
 * its output) and `plan` do not. `reusableTokenBytes`: token chunks already in .work from an earlier run.
 */
export function estimateWork(recipe: Recipe, sources: ResolvedSource[], options: { withShards: boolean; reusableTokenBytes: number }): WorkEstimate {
  let files = 0;
  let inputBytes = 0;
  const textBySource = sources.map((s) => {
    let text = 0;
    for (const f of s.files) {
      if (!f.inSlice) continue;
      files++;
      inputBytes += f.size;
      text += f.size * (compressed(f.path) ? TEXT_PER_INPUT_BYTE.compressed : TEXT_PER_INPUT_BYTE.plain);
    }
    return text;
  });
  const textBytes = textBySource.reduce((a, b) => a + b, 0);
  const tokenBytes = tokenChunkBytes(textBytes, options.reusableTokenBytes);
  const shardBytes = options.withShards ? shardBytesFor(recipe, textBySource) : 0;
  const corpusDbBytes = textBytes;
  const peakBytes = Math.max(corpusDbBytes + tokenBytes, tokenBytes + shardBytes);
  return { files, inputBytes, textBytes, corpusDbBytes, tokenBytes, shardBytes, peakBytes: Math.ceil(peakBytes) };
}

/** Token chunks for this much text, less what an earlier run left. */
function tokenChunkBytes(textBytes: number, reusableTokenBytes: number): number {
  return Math.max(0, (4 * textBytes) / TEXT_BYTES_PER_TOKEN - reusableTokenBytes);
}

/** Shards for the mixture as sample.ts will size it: target_tokens, or the largest one max_epochs allows. */
function shardBytesFor(recipe: Recipe, textBySource: number[]): number {
  const weightSum = recipe.sources.reduce((a, s) => a + s.weight, 0);
  const tokens = (i: number) => (textBySource[i] ?? 0) / TEXT_BYTES_PER_TOKEN;
  const mixture = recipe.target_tokens ?? Math.min(...recipe.sources.map((s, i) => ((s.max_epochs ?? recipe.max_epochs) * tokens(i) * weightSum) / s.weight));
  return Number.isFinite(mixture) ? 4 * mixture : 0;
}

/**
 * Once dedup is done the text tokenisation will read is known exactly (`keptBytesBySource`), and it is on disk
 * already: what .work still needs is the token chunks, and the shards beyond the text's database, which is deleted
 * before they are staged.
 */
export function estimateAfterDedup(
  recipe: Recipe,
  keptBytesBySource: number[],
  options: { withShards: boolean; reusableTokenBytes: number; corpusDbBytes: number },
): { keptBytes: number; tokenBytes: number; shardBytes: number; needBytes: number } {
  const keptBytes = keptBytesBySource.reduce((a, b) => a + b, 0);
  const tokenBytes = tokenChunkBytes(keptBytes, options.reusableTokenBytes);
  const shardBytes = options.withShards ? shardBytesFor(recipe, keptBytesBySource) : 0;
  return { keptBytes, tokenBytes, shardBytes, needBytes: Math.ceil(tokenBytes + Math.max(0, shardBytes - options.corpusDbBytes)) };
}

/** The same check before tokenising, with the kept text's exact size. */
export function checkTokenizeSpace(e: ReturnType<typeof estimateAfterDedup>, workDir: string, free: number | undefined, planOnly = false): void {
  const need = planOnly ? e.tokenBytes : e.needBytes;
  if (free === undefined || need <= free) return;
  throw new RuntimeFailure(
    `disk: the ${formatSize(e.keptBytes)} of text left after dedup need about ${formatSize(need)} more in ${workDir} ` +
      `(${formatSize(e.tokenBytes)} of token chunks at ${TEXT_BYTES_PER_TOKEN} bytes of text a token${planOnly ? "" : `, then ${formatSize(e.shardBytes)} of shards where the text's database was`}); ` +
      `${formatSize(free)} free there — not enough. Free space there, build to an --out on a larger disk, build as partitions ` +
      `(--partition i/N, then --merge), or pass --no-disk-check if your text tokenises more densely`,
  );
}

/** One line for the output: what the estimate holds and the free space. */
export function describeEstimate(e: WorkEstimate, workDir: string, free: number | undefined): string {
  const parts = [
    `${formatSize(e.corpusDbBytes)} of text in DuckDB until it is tokenised`,
    `${formatSize(e.tokenBytes)} of token chunks${e.tokenBytes === 0 ? " (reused)" : ""}`,
    ...(e.shardBytes > 0 ? [`${formatSize(e.shardBytes)} of shards staged there`] : []),
  ];
  return (
    `disk: about ${formatSize(e.peakBytes)} in ${workDir} at the build's peak, from ${e.files} input file(s) of ${formatSize(e.inputBytes)} ` +
    `(${parts.join("; ")}; assuming ${TEXT_BYTES_PER_TOKEN} bytes of text a token)${free !== undefined ? `; ${formatSize(free)} free there` : ""}`
  );
}

/**
 * Refuses, with the numbers and the ways out, when the text and its tokens will not fit the free space. The shards
 * are checked after dedup (checkTokenizeSpace), once the documents are counted: an absurd max_epochs is a recipe
 * error to be named as such there (select.ts), not a full disk.
 */
export function checkWorkSpace(e: WorkEstimate, workDir: string, free: number | undefined): void {
  const need = e.corpusDbBytes + e.tokenBytes;
  if (free === undefined || need <= free) return;
  throw new RuntimeFailure(
    `${describeEstimate(e, workDir, free)}: the text and its tokens alone need ${formatSize(need)} — not enough. Free space there, build to an --out on a larger disk, ` +
      `build as partitions on several machines (--partition i/N, then --merge), or pass --no-disk-check if your text ` +
      `tokenises more densely than the estimate assumes`,
  );
}
