import { minhashSpec, type Recipe } from "../../recipe/schema.ts";
import { BUILD_TOKENIZER } from "../../shards/layout.ts";
import type { Manifest } from "../../shards/manifest.ts";
import { TOOL_VERSION } from "../../util/version.ts";
import type { PackResult } from "../stages/pack.ts";
import type { LockedFile, LockedTokenizer } from "../lock.ts";
import type { ResolvedSource } from "../resolve.ts";
import { SHARE_TOLERANCE, type SourcePlan } from "../mixture/sample.ts";
import type { LengthUpsamplingStats } from "../mixture/length-upsampling.ts";


/** What near-dedup found (stages/near-dedup.ts), samples by source and file index; the manifest names them. */
export type NearDuplicateReport = Omit<NonNullable<Manifest["near_duplicates"]>, "samples"> & {
  samples: { source: number; file: number; row: number; firstLines: string; kept: boolean }[][];
};

export interface SourceStats {
  documentsRead: number;
  skipped: Record<string, number>;
  /** the first SKIPPED_ROWS_KEPT skipped rows per reason: [file index, row] in file and row order */
  skippedRows: Record<string, [number, number][]>;
  duplicatesWithin: number;
  duplicatesAcross: number;
  /** with dedup.minhash: near-duplicates removed whose kept copy is in this source, and in another */
  nearDuplicates?: { within: number; across: number };
  fileRows: number[];
  /** a source with length upsampling: its short documents kept and dropped, and its length histogram before and after */
  lengthUpsampling?: LengthUpsamplingStats;
}

/** What decontamination removed, per source, and against what (only for a recipe that decontaminates). */
function decontaminationLines(m: Manifest): string {
  const d = m.decontamination;
  if (!d) return "";
  const tasks = d.tasks.map((t) => `${t.task} (${t.repo}@${t.commit.slice(0, 12)}, ${t.evaluation_rows.toLocaleString("en-US")} rows)`).join(", ");
  const per = m.sources.map((s) => `${s.name} ${(s.documents_skipped.contaminated ?? 0).toLocaleString("en-US")}`).join(", ");
  return `- Decontaminated against ${tasks}: a document sharing one ${d.ngram}-gram of words with an evaluation row is removed (${d.normalization}); removed per source: ${per}.\n`;
}

/** A source as the manifest records it: its spec, Hub commit, and every file with its hash. */
export type ManifestSource = Pick<ResolvedSource, "spec" | "hf"> & { files: LockedFile[] };
export type ManifestTokenizer = LockedTokenizer & { eosId: number; bosId: number; vocabSize: number; impl: string };

export function buildManifest(args: {
  recipe: Recipe;
  recipeFile: string;
  recipeSha256: string;
  tokenizer: ManifestTokenizer;
  sources: ManifestSource[];
  stats: SourceStats[];
  plans: SourcePlan[];
  packed: PackResult;
  decontamination?: Manifest["decontamination"];
  nearDuplicates?: NearDuplicateReport;
}): Manifest {
  const { recipe, tokenizer, packed } = args;
  const warnings = args.plans.flatMap((plan) => {
    const miss = Math.abs(plan.tokensSelected - plan.targetTokens);
    if (plan.targetTokens === 0 || miss <= SHARE_TOLERANCE * plan.targetTokens) return [];
    return [
      `source '${plan.name}': ${plan.tokensSelected} tokens selected against a target of ${plan.targetTokens} ` +
        `(${((100 * plan.tokensSelected) / plan.targetTokens).toFixed(1)}%): documents are never cut, and its documents ` +
        `(${plan.documentsAvailable}, ${plan.tokensAvailable} tokens in all) do not add up to the target within ${100 * SHARE_TOLERANCE}%; ` +
        `raise target_tokens or choose sources with shorter documents`,
    ];
  });
  const manifest: Manifest = {
    format: "chuxin-data/1",
    tool: { name: "chuxin-data", version: TOOL_VERSION },
    recipe: { name: recipe.name, path: args.recipeFile, sha256: args.recipeSha256 },
    ...(recipe.license ? { license: recipe.license } : {}),
    tokenizer: {
      repo: tokenizer.repo ?? null,
      revision: tokenizer.revision ?? null,
      commit: tokenizer.commit ?? null,
      file: tokenizer.file,
      path: tokenizer.path ?? null,
      sha256: tokenizer.sha256,
      eos_id: tokenizer.eosId,
      bos_id: tokenizer.bosId,
      vocab_size: tokenizer.vocabSize,
      add_bos: recipe.tokenizer.add_bos,
      in_build: BUILD_TOKENIZER,
      implementation:
        tokenizer.impl === "native"
          ? "chuxin-data native byte-level BPE (ids equal Hugging Face tokenizers')"
          : "@huggingface/tokenizers with Digits replaced by Split(\\p{N}, Isolated) for Rust parity",
    },
    sequence_length: recipe.sequence_length,
    seed: recipe.seed,
    dtype: "uint32",
    dedup: {
      ...recipe.dedup,
      ...(recipe.dedup.minhash !== undefined ? { minhash: minhashSpec(recipe.dedup.minhash) ?? false } : {}),
      hash: "md5 (128-bit) of the normalised text; first occurrence in recipe order kept",
    },
    filters: recipe.filters,
    target_tokens: recipe.target_tokens ?? null,
    total_tokens: packed.totalTokens,
    total_sequences: packed.totalSequences,
    tail_tokens_dropped: packed.tailTokensDropped,
    shards: packed.shards,
    sources: args.sources.map((source, i) => {
      const stats = args.stats[i]!;
      const plan = args.plans[i]!;
      const out = packed.perSource[i]!;
      return {
        name: source.spec.name,
        hf: source.hf ?? null,
        local: !source.hf,
        revision: source.hf?.commit ?? null,
        files: source.files.map((f, j) => ({ path: f.path, size: f.size, sha256: f.sha256, rows: stats.fileRows[j] ?? 0 })),
        documents_read: stats.documentsRead,
        documents_skipped: stats.skipped,
        skipped_rows: Object.fromEntries(
          Object.entries(stats.skippedRows)
            .filter(([, rows]) => rows.length > 0)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([reason, rows]) => [reason, rows.map(([f, row]) => ({ file: source.files[f]!.path, row }))]),
        ),
        duplicates_removed: {
          within_source: stats.duplicatesWithin,
          across_sources: stats.duplicatesAcross,
          total: stats.duplicatesWithin + stats.duplicatesAcross,
        },
        ...(stats.nearDuplicates
          ? {
              near_duplicates_removed: {
                within_source: stats.nearDuplicates.within,
                across_sources: stats.nearDuplicates.across,
                total: stats.nearDuplicates.within + stats.nearDuplicates.across,
              },
            }
          : {}),
        documents_available: plan.documentsAvailable,
        tokens_available: plan.tokensAvailable,
        epochs: plan.epochs,
        documents_written: out.documentsWritten,
        tokens_written: out.tokensWritten,
        tail_tokens_dropped: out.tailTokensDropped,
        target_tokens: plan.targetTokens,
        share: packed.totalTokens > 0 ? out.tokensWritten / packed.totalTokens : 0,
        target_share: plan.targetShare,
        ...(stats.lengthUpsampling ? { length_upsampling: stats.lengthUpsampling } : {}),
      };
    }),
  };
  if (args.decontamination) manifest.decontamination = args.decontamination;
  if (args.nearDuplicates) {
    const { samples, ...rest } = args.nearDuplicates;
    manifest.near_duplicates = {
      ...rest,
      samples: samples.map((cluster) =>
        cluster.map((m) => ({ source: args.sources[m.source]!.spec.name, file: args.sources[m.source]!.files[m.file]!.path, row: m.row, first_lines: m.firstLines, kept: m.kept })),
      ),
    };
  }
  if (warnings.length > 0) manifest.warnings = warnings;
  return manifest;
}

/** With dedup.minhash: how near-duplicates were found, and how many each source lost (MIXTURE.md and the card). */
function nearDuplicateLines(m: Manifest): string {
  const n = m.near_duplicates;
  if (!n) return "";
  const per = m.sources.map((s) => `${s.name} ${(s.near_duplicates_removed?.total ?? 0).toLocaleString("en-US")}`).join(", ");
  const verify = n.verify_jaccard !== null ? `; a candidate joins only at a shingle Jaccard of at least ${n.verify_jaccard} (${n.pairs_rejected.toLocaleString("en-US")} pairs turned down)` : "";
  return (
    `- Near-duplicates: ${n.method}${verify}. Words: ${n.words}. ` +
    `${n.documents_removed.toLocaleString("en-US")} documents removed from ${n.clusters.toLocaleString("en-US")} clusters; per source: ${per}.\n`
  );
}

const pct = (x: number) => `${(100 * x).toFixed(3)}%`;
const int = (x: number) => x.toLocaleString("en-US");

export function mixtureTable(m: Manifest): string {
  // The near-duplicates column only for a build that looked for them, so other builds' tables keep their bytes.
  const near = m.near_duplicates !== undefined;
  const rows = m.sources.map(
    (s) =>
      `| ${s.name} | ${s.hf ? `${s.hf.repo}@${s.hf.commit.slice(0, 12)}` : "local"} | ${int(s.documents_read)} | ${int(Object.values(s.documents_skipped).reduce((a, b) => a + b, 0))} | ${int(s.duplicates_removed.total)} |${near ? ` ${int(s.near_duplicates_removed?.total ?? 0)} |` : ""} ${int(s.documents_written)} | ${int(s.tokens_written)} | ${s.epochs.toFixed(3)} | ${pct(s.share)} | ${pct(s.target_share)} |`,
  );
  return [
    `| source | origin | documents read | skipped | duplicates removed |${near ? " near-duplicates removed |" : ""} documents written | tokens written | epochs | share | target share |`,
    `|---|---|---:|---:|---:|${near ? "---:|" : ""}---:|---:|---:|---:|---:|`,
    ...rows,
    `| **total** | | | | |${near ? " |" : ""} | **${int(m.total_tokens)}** | | 100% | 100% |`,
  ].join("\n");
}

export function mixtureMarkdown(m: Manifest): string {
  return `# Data mixture: ${m.recipe.name}

${mixtureTable(m)}

- ${int(m.total_sequences)} sequences of ${m.sequence_length} tokens (${int(m.total_tokens)} tokens) in ${m.shards.length} shard(s); ${int(m.tail_tokens_dropped)} tail tokens dropped.
- Tokenizer: ${m.tokenizer.repo ?? m.tokenizer.path}${m.tokenizer.commit ? `@${m.tokenizer.commit}` : ""} (sha256 ${m.tokenizer.sha256}); EOS ${m.tokenizer.eos_id} ends every document${m.tokenizer.add_bos ? `, BOS ${m.tokenizer.bos_id} starts it` : ""}.
- Dedup: ${m.dedup.enabled ? `exact, ${m.dedup.normalization}, ${m.dedup.hash}` : "off"}. Seed ${m.seed}. Recipe sha256 ${m.recipe.sha256}.
${nearDuplicateLines(m)}- Share = tokens written / total tokens, exactly as the shards hold them; skipped rows by reason are in manifest.json.
${decontaminationLines(m)}${(m.warnings ?? []).map((w) => `- **Warning:** ${w}.\n`).join("")}${lengthUpsamplingTable(m)}`;
}

/** Length upsampling (recipes with it): the short documents kept per source, and the tokens by document length before and after. */
function lengthUpsamplingTable(m: Manifest): string {
  const sources = m.sources.filter((s) => s.length_upsampling);
  if (sources.length === 0) return "";
  const bins = Object.keys(sources[0]!.length_upsampling!.before.tokens);
  const rows = sources.map((s) => {
    const u = s.length_upsampling!;
    return `| ${s.name} | < ${int(u.short_below)} | ${u.keep_short} | ${int(u.short_documents)} | ${int(u.short_kept)} | ${int(u.documents_dropped)} | ${bins.map((b) => `${int(u.before.tokens[b] ?? 0)} → ${int(u.after.tokens[b] ?? 0)}`).join(" | ")} |`;
  });
  return `
## Length upsampling

Within each source, documents shorter than the bound (in tokens, EOS included) are kept at exactly the share given
(rounded to a whole document, chosen by a seeded key); longer ones all stay, so they carry more of the source's
share while the source keeps its weight. Tokens by document length, before → after:

| source | short | keep | short documents | kept | dropped | ${bins.join(" | ")} |
|---|---:|---:|---:|---:|---:|${bins.map(() => "---:").join("|")}|
${rows.join("\n")}
`;
}

/** The Hub's size categories, by number of rows (here: sequences). */
export function sizeCategory(n: number): string {
  const steps: [number, string][] = [[1e3, "n<1K"], [1e4, "1K<n<10K"], [1e5, "10K<n<100K"], [1e6, "100K<n<1M"], [1e7, "1M<n<10M"], [1e8, "10M<n<100M"], [1e9, "100M<n<1B"]];
  return steps.find(([limit]) => n < limit)?.[1] ?? "n>1B";
}

/**
 * The build's README.md: YAML front matter the Hub reads (name, license and languages when given, size category,
 * the source datasets), then the format, how to load it in Python, how to rebuild it, the sources, the
 * decontamination and the mixture.
 */
export function datasetCard(m: Manifest, meta: { license?: string; languages?: string[] } = {}): string {
  const sources = m.sources
    .map((s) => `  - ${s.hf ? `${s.hf.repo} (commit ${s.hf.commit})` : `${s.name} (local files)`}`)
    .join("\n");
  const hubSources = [...new Set(m.sources.filter((s) => s.hf).map((s) => s.hf!.repo))];
  const front = [
    "---",
    `pretty_name: ${JSON.stringify(m.recipe.name)}`,
    ...((meta.license ?? m.license) ? [`license: ${meta.license ?? m.license}`] : []),
    ...(meta.languages?.length ? ["language:", ...meta.languages.map((l) => `- ${l}`)] : []),
    "size_categories:",
    `- ${sizeCategory(m.total_sequences)}`,
    ...(hubSources.length ? ["source_datasets:", ...hubSources.map((r) => `- ${r}`)] : []),
    "task_categories:",
    "- text-generation",
    "tags:",
    "- pretraining",
    "- chuxin-data",
    "---",
  ].join("\n");
  const d = m.decontamination;
  const decontamination = d
    ? `## Decontamination\n${d.documents_removed.toLocaleString("en-US")} documents removed for sharing a ${d.ngram}-gram (${d.normalization}) with the evaluation rows of: ${d.tasks
        .map((t) => `${t.task} (${t.repo}@${t.commit.slice(0, 12)}, ${t.evaluation_rows.toLocaleString("en-US")} rows)`)
        .join(", ")}.\n\n`
    : "";
  const first = m.shards[0];
  const nearDuplicates = m.near_duplicates ? `## Near-duplicates\n${nearDuplicateLines(m).slice(2)}\n` : "";
  return `${front}
# ${m.recipe.name}

Pre-training token shards built by chuxin-data ${m.tool.version} from recipe \`${m.recipe.path}\` (sha256 \`${m.recipe.sha256}\`): ${m.total_sequences.toLocaleString("en-US")} sequences of ${m.sequence_length.toLocaleString("en-US")} tokens (${m.total_tokens.toLocaleString("en-US")} tokens) in ${m.shards.length} shard(s).

## Format
- \`shard-NNNNN.npy\`: NumPy format 1.0, dtype \`<u4\`, shape (sequences, ${m.sequence_length}), C order: \`numpy.load(path, mmap_mode="r")\`.
- \`shard-NNNNN.docs.parquet\`: one row per document piece in that shard: source, file, row, doc_hash, epoch, start (token offset in the shard), length, doc_offset, doc_length.
- Documents are concatenated, each followed by EOS (${m.tokenizer.eos_id})${m.tokenizer.add_bos ? ` and preceded by BOS (${m.tokenizer.bos_id})` : ""}; a document may continue into the next sequence.
- \`tokenizer.json\`: the tokenizer the ids come from (sha256 \`${m.tokenizer.sha256}\`).
- \`manifest.json\`: every count, hash and share; \`recipe.lock.json\`: the exact input files; \`MIXTURE.md\`: the mixture table.

## Load it in Python
\`\`\`python
import numpy as np, pyarrow.parquet as pq
from tokenizers import Tokenizer

tokens = np.load("${first?.path ?? "shard-00000.npy"}", mmap_mode="r")          # (sequences, ${m.sequence_length}) uint32
docs = pq.read_table("${first?.doc_index ?? "shard-00000.docs.parquet"}")  # where each document piece came from
print(docs.slice(0, 3).to_pylist())
tok = Tokenizer.from_file("tokenizer.json")
print(tok.decode(tokens[0].tolist(), skip_special_tokens=False))
\`\`\`
(or \`duckdb.sql("SELECT * FROM 'shard-*.docs.parquet'")\` for every document index at once).

## Rebuild it
\`\`\`sh
npx chuxin-data build ${m.recipe.path} --locked --lock recipe.lock.json   # the same shards, byte for byte
\`\`\`

## Sources
${sources}

${decontamination}${nearDuplicates}## Mixture
${mixtureTable(m)}

Licenses are those of the sources above; check each before redistribution.
`;
}
