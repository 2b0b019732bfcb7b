import { join, resolve } from "node:path";
import type { Argv } from "yargs";
import { readManifest } from "../../shards/manifest-file.ts";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";

interface Piece {
  source: string;
  file: string;
  row: bigint;
  start: bigint;
  length: number;
  doc_offset: number;
  doc_length: number;
}

export function registerInspect(y: Argv): Argv {
  return y
    .command(
      "inspect <out>",
      "print a build's mixture, and decode sequences with document boundaries marked",
      (c) =>
        c
          .positional("out", { type: "string", demandOption: true })
          .option("sequence", { alias: "s", type: "number", array: true, describe: "global sequence number(s) to decode" })
          .option("json", { type: "boolean", default: false }),
      async (args) => {
        const { BuildDb, sqlString } = await import("../../pipeline/db.ts");
        const { mixtureTable } = await import("../../pipeline/manifest.ts");
        const { readNpyInfo, readSequences } = await import("../../shards/npy.ts");
        const { tokenizerForManifest } = await import("../../shards/tokenizer-for.ts");
        const outDir = resolve(args.out!);
        const manifest = await readManifest(outDir);
        const wanted = args.sequence ?? [];
        const decoded: unknown[] = [];
        if (wanted.length > 0) {
          const tokenizer = await tokenizerForManifest(manifest);
          const db = await BuildDb.open(":memory:", 1);
          try {
            for (const seq of wanted) {
              if (!Number.isInteger(seq) || seq < 0 || seq >= manifest.total_sequences) {
                throw new UsageError(`--sequence ${seq}: out of range; the build has sequences 0..${manifest.total_sequences - 1}`);
              }
              let first = 0;
              const shard = manifest.shards.find((s) => (seq < first + s.sequences ? true : ((first += s.sequences), false)))!;
              const local = seq - first;
              const info = await readNpyInfo(join(outDir, shard.path));
              const ids = await readSequences(join(outDir, shard.path), info, local, 1);
              const L = manifest.sequence_length;
              const lo = local * L;
              const pieces = await db.rows<Piece>(
                `SELECT source, file, "row", start, length, doc_offset, doc_length FROM read_parquet(${sqlString(join(outDir, shard.doc_index))})
                 WHERE start < ${lo + L} AND start + length > ${lo} ORDER BY start`,
              );
              const docs = pieces.map((p) => {
                const from = Math.max(Number(p.start), lo);
                const to = Math.min(Number(p.start) + p.length, lo + L);
                const tokens = Array.from(ids.subarray(from - lo, to - lo));
                const firstTok = p.doc_offset + (from - Number(p.start));
                return {
                  source: p.source,
                  file: p.file,
                  row: Number(p.row),
                  tokens: [firstTok, firstTok + tokens.length],
                  doc_length: p.doc_length,
                  text: tokenizer.decode(tokens),
                };
              });
              decoded.push({ sequence: seq, shard: shard.path, documents: docs });
            }
          } finally {
            db.close();
          }
        }
        if (args.json) {
          process.stdout.write(JSON.stringify({ manifest: { total_tokens: manifest.total_tokens, total_sequences: manifest.total_sequences, sources: manifest.sources }, sequences: decoded }) + "\n");
          return;
        }
        process.stdout.write(`${mixtureTable(manifest)}\n\n${manifest.total_sequences} sequences × ${manifest.sequence_length} tokens in ${manifest.shards.length} shard(s)\n`);
        for (const d of decoded as { sequence: number; documents: { source: string; file: string; row: number; tokens: number[]; doc_length: number; text: string }[] }[]) {
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
      (c) => c.positional("out", { type: "string", demandOption: true }),
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
