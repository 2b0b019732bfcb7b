import { resolve } from "node:path";
import type { Argv } from "yargs";
import { readManifest } from "../../shards/manifest-file.ts";
import type { Manifest } from "../../shards/manifest.ts";
import { closest } from "../../util/did-you-mean.ts";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";

/** `inspect --skipped REASON`: each source's count for the reason and the first rows the manifest names. */
function skippedReport(m: Manifest, reason: string, outDir: string): { text: string; json: unknown } {
  const counted = new Map<string, number>();
  for (const s of m.sources) for (const [r, n] of Object.entries(s.documents_skipped)) counted.set(r, (counted.get(r) ?? 0) + n);
  if (!counted.has(reason)) {
    const hint = closest(reason, [...counted.keys()]);
    const seen = [...counted].filter(([, n]) => n > 0).map(([r, n]) => `${r} (${n.toLocaleString("en-US")})`);
    throw new UsageError(
      `${outDir}: no source of this build counts skip reason '${reason}'${hint ? `; did you mean '${hint}'?` : ""} Reasons with skipped rows: ${seen.length ? seen.join(", ") : "none"}`,
    );
  }
  const sources = m.sources.map((s) => ({ source: s.name, skipped: s.documents_skipped[reason] ?? 0, rows: s.skipped_rows?.[reason] ?? [] }));
  const lines = [`${(counted.get(reason) ?? 0).toLocaleString("en-US")} row(s) skipped for ${reason} (rows count from 0; the manifest names the first 100 of each source)`];
  for (const s of sources) {
    if (s.skipped === 0) continue;
    lines.push("", `${s.source}: ${s.skipped.toLocaleString("en-US")}`);
    for (const r of s.rows) lines.push(`  ${r.file} row ${r.row}`);
    if (s.rows.length < s.skipped) lines.push(`  … and ${(s.skipped - s.rows.length).toLocaleString("en-US")} more`);
  }
  return { text: lines.join("\n") + "\n", json: { reason, sources } };
}

/** `inspect --near-duplicates`: what MinHash found, and each sample cluster's members with their first lines. */
function nearDuplicateReport(near: NonNullable<Manifest["near_duplicates"]>): string {
  const lines = [
    `${near.documents_removed.toLocaleString("en-US")} near-duplicates removed from ${near.clusters.toLocaleString("en-US")} clusters ` +
      `(${near.candidate_pairs.toLocaleString("en-US")} candidate pairs${near.verify_jaccard !== null ? `, ${near.pairs_rejected.toLocaleString("en-US")} under verify_jaccard ${near.verify_jaccard}` : ""})`,
    `${near.method}`,
    `words: ${near.words}`,
  ];
  near.samples.forEach((cluster, i) => {
    lines.push("", `cluster ${i + 1}:`);
    for (const m of cluster) lines.push(`  ${m.kept ? "kept   " : "removed"} ${m.source} ${m.file} row ${m.row}: ${m.first_lines}`);
  });
  return lines.join("\n") + "\n";
}

export function registerInspect(y: Argv): Argv {
  return y
    .command(
      "inspect <out>",
      "print a build's mixture, and decode sequences with document boundaries marked",
      (c) =>
        c
          .positional("out", { type: "string", demandOption: true, describe: "a build's output folder" })
          .option("sequence", { alias: "s", type: "number", array: true, describe: "global sequence number(s) to decode" })
          .option("skipped", { type: "string", describe: "show the first rows skipped for this reason (e.g. gopher_repetition.top_2_gram), by source, file and row" })
          .option("near-duplicates", { type: "boolean", describe: "show the first near-duplicate clusters MinHash found (dedup.minhash), to judge its threshold" })
          .option("json", { type: "boolean", default: false, describe: "one JSON object on stdout" })
          .conflicts("skipped", ["near-duplicates", "sequence"])
          .conflicts("near-duplicates", "sequence"),
      async (args) => {
        const { mixtureTable } = await import("../../pipeline/output/manifest.ts");
        if (args.skipped !== undefined) {
          const manifest = await readManifest(resolve(args.out!));
          const report = skippedReport(manifest, args.skipped, resolve(args.out!));
          process.stdout.write(args.json ? JSON.stringify(report.json) + "\n" : report.text);
          return;
        }
        if (args["near-duplicates"]) {
          const manifest = await readManifest(resolve(args.out!));
          const near = manifest.near_duplicates;
          if (!near) throw new UsageError(`${resolve(args.out!)}: this build did not look for near-duplicates; set dedup.minhash in its recipe (e.g. \`minhash: true\`) and rebuild`);
          if (args.json) {
            process.stdout.write(JSON.stringify({ near_duplicates: near }) + "\n");
            return;
          }
          process.stdout.write(nearDuplicateReport(near));
          return;
        }
        const { sequenceDocuments } = await import("../../shards/sequences.ts");
        const { tokenizerForManifest } = await import("../../shards/tokenizer-for.ts");
        const outDir = resolve(args.out!);
        const manifest = await readManifest(outDir);
        const wanted = args.sequence ?? [];
        const tokenizer = wanted.length > 0 ? await tokenizerForManifest(manifest, outDir) : undefined;
        const decoded = (await sequenceDocuments(outDir, manifest, wanted)).map((s) => ({
          sequence: s.sequence,
          shard: s.shard,
          documents: s.documents.map(({ ids, ...d }) => ({ ...d, text: tokenizer!.decode(ids) })),
        }));
        if (args.json) {
          process.stdout.write(JSON.stringify({ manifest: { total_tokens: manifest.total_tokens, total_sequences: manifest.total_sequences, sources: manifest.sources }, sequences: decoded }) + "\n");
          return;
        }
        process.stdout.write(`${mixtureTable(manifest)}\n\n${manifest.total_sequences} sequences × ${manifest.sequence_length} tokens in ${manifest.shards.length} shard(s)\n`);
        for (const d of decoded) {
          process.stdout.write(`\n=== sequence ${d.sequence} ===\n`);
          for (const doc of d.documents) {
            process.stdout.write(`\n⟦${doc.source} ${doc.file} row ${doc.row}, tokens ${doc.tokens[0]}..${doc.tokens[1]} of ${doc.doc_length}⟧\n${doc.text}\n`);
          }
        }
      },
    )
    .command(
      "verify <out>",
      "re-hash every shard against the manifest and check that token counts add up",
      (c) => c.positional("out", { type: "string", demandOption: true, describe: "a build's output folder" }),
      async (args) => {
        const { verifyBuild } = await import("../../shards/verify.ts");
        const outDir = resolve(args.out!);
        const manifest = await readManifest(outDir);
        const problems = await verifyBuild(outDir, manifest);
        if (problems.length > 0) throw new RuntimeFailure(`verify ${outDir}: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
        process.stdout.write(`${outDir}: ok (${manifest.shards.length} shard(s), ${manifest.total_sequences} sequences, ${manifest.total_tokens} tokens)\n`);
      },
    );
}
