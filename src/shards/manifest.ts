import type { Recipe } from "../recipe/schema.ts";

/**
 * The contract between build and train: what a build's output folder holds (manifest.json), written by the
 * pipeline and read by verify, inspect, train and eval.
 */

/** One shard file and its document index, as the manifest lists them. */
export interface ShardRecord {
  path: string;
  doc_index: string;
  sha256: string;
  doc_index_sha256: string;
  sequences: number;
}

export interface Manifest {
  format: "chuxin-data/1";
  tool: { name: string; version: string };
  recipe: { name: string; path: string; sha256: string };
  /** the recipe's license for the dataset card, when it names one */
  license?: string;
  tokenizer: {
    repo: string | null;
    revision: string | null;
    commit: string | null;
    file: string;
    path: string | null;
    sha256: string;
    eos_id: number;
    bos_id: number;
    vocab_size: number;
    add_bos: boolean;
    implementation: string;
    /** the tokenizer's copy in the build folder (self-contained builds); absent in builds written before it */
    in_build?: string;
  };
  sequence_length: number;
  seed: number;
  dtype: "uint32";
  dedup: Recipe["dedup"] & { hash: string };
  filters: Recipe["filters"];
  target_tokens: number | null;
  total_tokens: number;
  total_sequences: number;
  tail_tokens_dropped: number;
  shards: ShardRecord[];
  sources: ManifestSource[];
  /** Present only when something needs a reader's attention, e.g. a source far from its target share. */
  warnings?: string[];
  /** Present when the recipe decontaminates: against which benchmark rows, how, and how many documents went. */
  decontamination?: {
    ngram: number;
    normalization: string;
    tasks: { task: string; repo: string; commit: string; evaluation_rows: number; ngrams: number }[];
    documents_removed: number;
  };
  /** Present when the recipe removes near-duplicates (dedup.minhash): how, what it found, and its first clusters. */
  near_duplicates?: {
    method: string;
    words: string;
    ngram: number;
    bands: number;
    rows: number;
    seed: number;
    verify_jaccard: number | null;
    candidate_pairs: number;
    pairs_rejected: number;
    clusters: number;
    documents_removed: number;
    /** the first clusters in recipe order: the kept document first, then removed ones, each with its first lines (" / " between them, 160 characters) */
    samples: { source: string; file: string; row: number; first_lines: string; kept: boolean }[][];
  };
}

export interface ManifestSource {
  name: string;
  hf: { repo: string; revision: string; commit: string } | null;
  local: boolean;
  revision: string | null;
  files: { path: string; size: number; sha256: string; rows: number }[];
  documents_read: number;
  documents_skipped: Record<string, number>;
  /** the first 100 skipped rows of each reason (file, 0-based row as in the document indexes); all are counted above */
  skipped_rows?: Record<string, { file: string; row: number }[]>;
  duplicates_removed: { within_source: number; across_sources: number; total: number };
  /** with dedup.minhash: near-duplicates removed, split by whether the kept copy is in the same source */
  near_duplicates_removed?: { within_source: number; across_sources: number; total: number };
  documents_available: number;
  tokens_available: number;
  epochs: number;
  documents_written: number;
  tokens_written: number;
  tail_tokens_dropped: number;
  target_tokens: number;
  share: number;
  target_share: number;
  /** recipes with length_upsampling: short documents kept and dropped, and the token-length histogram before and after */
  length_upsampling?: {
    short_below: number;
    keep_short: number;
    short_documents: number;
    short_kept: number;
    documents_dropped: number;
    before: { documents: Record<string, number>; tokens: Record<string, number> };
    after: { documents: Record<string, number>; tokens: Record<string, number> };
  };
}

