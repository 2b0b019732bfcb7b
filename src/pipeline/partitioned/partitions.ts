/**
 * A merge's inputs: the partitions' folders, read, checked to be the N slices of one recipe over the same inputs,
 * and their token chunks. Every merge step and the one-job merge start here.
 */
import { join, resolve } from "node:path";
import type { LoadedRecipe } from "../../recipe/load.ts";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";
import { TokenStore } from "../stages/tokenize.ts";
import { PARTITION_TOKENS, readPartition, type PartitionRecord } from "./partition-format.ts";

export interface Partition {
  dir: string;
  record: PartitionRecord;
  /** the command that writes this partition again */
  rerun: string;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Reads every partition's record and checks they are the N slices of one recipe over the same inputs. */
export async function readPartitions(dirs: string[], loaded: LoadedRecipe, recipeArg: string): Promise<Partition[]> {
  if (dirs.length === 0) throw new UsageError(`--merge needs the partitions' folders: --merge DIR...`);
  const parts: Partition[] = [];
  for (const dir of dirs.map((d) => resolve(d))) {
    const record = await readPartition(dir, recipeArg);
    parts.push({ dir, record, rerun: `chuxin-data build ${recipeArg} --partition ${record.partition.index}/${record.partition.count} --out ${dir}` });
  }
  const count = parts[0]!.record.partition.count;
  const byIndex = new Map<number, Partition>();
  for (const p of parts) {
    const { index, count: n } = p.record.partition;
    if (n !== count) throw new UsageError(`${p.dir} is partition ${index}/${n} and ${parts[0]!.dir} is one of ${count}: every partition of a merge must come from the same --partition i/N split`);
    const twin = byIndex.get(index);
    if (twin) throw new UsageError(`${twin.dir} and ${p.dir} are both partition ${index}/${count}; pass each partition once`);
    byIndex.set(index, p);
    if (p.record.recipe.sha256 !== loaded.sha256) {
      throw new UsageError(
        `${p.dir} was built from a recipe with sha256 ${p.record.recipe.sha256}, but ${recipeArg} has sha256 ${loaded.sha256}; ` +
          `merge with the recipe the partitions were built from, or rebuild them`,
      );
    }
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length > 0) {
    const shown = missing.slice(0, 8).map((i) => `${i}/${count}`).join(", ") + (missing.length > 8 ? `, and ${missing.length - 8} more` : "");
    throw new UsageError(`the merge is missing partition(s) ${shown}: build each with \`chuxin-data build ${recipeArg} --partition i/${count} --out DIR\` and pass every DIR to --merge`);
  }
  const ordered = Array.from({ length: count }, (_, i) => byIndex.get(i)!);
  // Every partition must have seen the same inputs: the same tokenizer, commits, file lists and benchmark data.
  const first = ordered[0]!;
  const inputs = (r: PartitionRecord) => ({
    tokenizer: r.tokenizer,
    sources: r.sources.map((s) => ({ name: s.name, hf: s.hf, files: s.files.map((f) => [f.path, f.size]) })),
    decontamination: r.decontamination && { lock: r.decontamination.lock, tasks: r.decontamination.report.tasks },
  });
  for (const p of ordered.slice(1)) {
    if (p.record.tokenizer.impl !== first.record.tokenizer.impl) {
      throw new UsageError(
        `${p.dir} was tokenised with the ${p.record.tokenizer.impl} tokenizer and ${first.dir} with the ${first.record.tokenizer.impl} one; ` +
          `rerun one of them with the other's --tokenizer-impl (the ids are the same, the manifest records which ran)`,
      );
    }
    const mine = inputs(p.record);
    const theirs = inputs(first.record);
    const what = (Object.keys(mine) as (keyof typeof mine)[]).find((k) => !same(mine[k], theirs[k]));
    if (what) {
      throw new UsageError(
        `${p.dir} and ${first.dir} resolved different inputs (${what}): the Hub moved between them. Build every partition from one lock: ` +
          `pass --locked --lock FILE (the recipe.lock.json of an earlier build of ${recipeArg}) to each, and rerun them`,
      );
    }
  }
  if (!same(first.record.sources.map((s) => s.name), loaded.recipe.sources.map((s) => s.name))) {
    throw new UsageError(`${first.dir}: its sources differ from ${recipeArg}'s; rebuild the partitions`);
  }
  return ordered;
}

/** A partition's token chunks, checked against its record. */
export function partitionTokens(p: Partition): TokenStore {
  const store = TokenStore.openChunks(
    p.record.chunks.map((c) => join(p.dir, PARTITION_TOKENS, c.file)),
    (file, why) => new RuntimeFailure(`${file}: ${why}; rerun that partition: ${p.rerun}`),
    p.record.chunks.map((c) => c.sha256),
  );
  if (store.documents !== p.record.documents) throw new RuntimeFailure(`${p.dir}: its token chunks hold ${store.documents} documents, partition.json ${p.record.documents}; rerun that partition`);
  return store;
}

