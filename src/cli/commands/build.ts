import { cpus } from "node:os";
import { join, resolve } from "node:path";
import type { Argv } from "yargs";
import { wholeNumber } from "../numbers.ts";
import { outputMode, progressRenderer } from "../render.ts";
import { describeSteps, indexedSteps, MERGE_STEPS, mergeStepSpec, type MergeStep } from "../../pipeline/partitioned/merge-step-table.ts";

// Commands import what they run when they run: `--help` and `validate` must not load DuckDB.
const pipeline = () => import("../../pipeline/build.ts");
const manifestText = () => import("../../pipeline/output/manifest.ts");
const recipes = () => import("../../recipe/load.ts");

async function defaultOut(recipePath: string): Promise<string> {
  const { loadRecipe } = await recipes();
  return resolve("out", (await loadRecipe(recipePath)).recipe.name);
}

const common = (y: Argv) =>
  y
    .positional("recipe", { type: "string", demandOption: true, describe: "recipe YAML file" })
    .option("out", { alias: "o", type: "string", describe: "output folder (default: out/<recipe name>)" })
    .option("workers", { type: "number", describe: "tokenizer worker threads (default: number of cores)" })
    .option("locked", { type: "boolean", default: false, describe: "use exactly the files in recipe.lock.json; fail if the Hub no longer serves them" })
    .option("lock", { type: "string", describe: "lock file for --locked (default: OUT/recipe.lock.json)" })
    .option("tokenizer-impl", { choices: ["native", "js"], default: "native", describe: "native BPE (falls back to js, saying so, for unsupported tokenizer.json features)" })
    .option("force", { type: "boolean", default: false, describe: "build into an --out that holds files chuxin-data did not write (its README.md is replaced)" })
    .option("memory", { type: "string", describe: "the build's memory budget, e.g. 4GB or 60% (default: half of this machine's memory); DuckDB gets 60% of it and spills to OUT/.work beyond that" })
    .option("disk-check", {
      type: "boolean",
      default: true,
      describe: "refuse before reading when the estimate of OUT/.work's peak exceeds its free space (--no-disk-check: state it and go on)",
    })
    .option("json", { type: "boolean", default: false, describe: "NDJSON progress events on stdout" });

/** --memory as bytes; a usage error naming the flag when it is not a size DuckDB can work in. */
async function memoryOption(value: unknown): Promise<number | undefined> {
  if (value === undefined) return undefined;
  const { parseSize } = await import("../../util/size.ts");
  const bytes = parseSize(String(value));
  const { UsageError } = await import("../../util/errors.ts");
  if (bytes === undefined) throw new UsageError(`--memory ${value}: expected a size such as 4GB, 512MiB or 60%`);
  if (bytes < 64 * 2 ** 20) throw new UsageError(`--memory ${value}: DuckDB needs at least 64 MiB to build; give more`);
  return bytes;
}

/** --workers, bounded: thousands of threads exhaust the machine's process limit before they tokenise anything. */
async function workersOption(value: unknown): Promise<number | undefined> {
  const { maxWorkers } = await import("../../util/workers.ts");
  return wholeNumber("workers", value, 1, maxWorkers(), `at most twice this machine's ${cpus().length} cores; leave it out for one a core`);
}

/**
 * Runs a long stage under the spinner: Ctrl-C stops it and says `interrupted` (what is kept and how to go on), with
 * exit 130; exiting releases the output folder's lock (an exit handler).
 */
async function interruptible<T>(r: { stop: (failed?: boolean) => void }, interrupted: string, body: () => Promise<T>): Promise<T> {
  const onStop = () => {
    r.stop(true);
    process.stderr.write(`\ninterrupted: ${interrupted}\n`);
    process.exit(130);
  };
  process.once("SIGINT", onStop);
  try {
    const result = await body();
    r.stop();
    return result;
  } catch (error) {
    r.stop(true);
    throw error;
  } finally {
    process.off("SIGINT", onStop);
  }
}

export function registerBuild(y: Argv): Argv {
  return y
    .command(
      "build <recipe>",
      "build packed token shards and a manifest from a recipe",
      (c) =>
        common(c)
          .option("max-shard-bytes", { type: "number", describe: "largest shard file (default 1 GiB)" })
          .option("partition", {
            type: "string",
            describe: "build one slice i/N of the work (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT) into --out, for --merge; default --out: out/<name>.part-i-of-N",
          })
          .option("merge", { type: "array", string: true, describe: "combine the folders of partitions 0..N-1 into the build a single machine would write" })
          .option("merge-step", {
            choices: MERGE_STEPS,
            describe: `run the merge as dependent jobs on many machines, in this order: ${describeSteps()}`,
          })
          .option("index", { type: "number", describe: `with ${indexedSteps().map((s) => `--merge-step ${s.name}: ${s.index}`).join("; ")} (e.g. $SLURM_ARRAY_TASK_ID)` })
          .option("pack-jobs", { type: "number", describe: "with --merge-step plan: how many gather jobs write the shards (default: one per partition)" })
          .conflicts("partition", "merge"),
      async (args) => {
        const { parsePartition } = await import("../../pipeline/partitioned/partition-format.ts");
        const slice = args.partition !== undefined ? parsePartition(String(args.partition)) : undefined;
        const outDir = args.out ? resolve(args.out) : slice ? `${await defaultOut(args.recipe!)}.part-${slice.index}-of-${slice.count}` : await defaultOut(args.recipe!);
        const memoryBytes = await memoryOption(args.memory);
        const workers = await workersOption(args.workers);
        const { MIN_SHARD_BYTES, MAX_SHARD_BYTES } = await import("../../shards/layout.ts");
        const maxShardBytes = wholeNumber("max-shard-bytes", args["max-shard-bytes"], MIN_SHARD_BYTES, MAX_SHARD_BYTES, "bytes in one shard file; the default is 1 GiB");
        const mode = outputMode(args.json);
        const r = await progressRenderer(mode);
        const { build } = await pipeline();
        const { mixtureTable } = await manifestText();
        const options = {
          recipePath: args.recipe!,
          outDir,
          workers,
          locked: args.locked,
          lockPath: args.lock,
          maxShardBytes,
          tokenizerImpl: args["tokenizer-impl"] as "native" | "js",
          force: args.force,
          memoryBytes,
          diskCheck: args["disk-check"],
          sink: r.sink,
        };
        const step = args["merge-step"] as MergeStep | undefined;
        const { UsageError } = await import("../../util/errors.ts");
        if (step === undefined && (args.index !== undefined || args["pack-jobs"] !== undefined)) throw new UsageError(`--index and --pack-jobs go with --merge-step`);
        if (step !== undefined && !args.merge) throw new UsageError(`--merge-step ${step} needs the partitions' folders: --merge DIR...`);
        const spec = step ? mergeStepSpec(step) : undefined;
        if (args["pack-jobs"] !== undefined && !spec?.packJobs) throw new UsageError(`--pack-jobs is the plan's: pass it with --merge-step plan`);
        if (args.index !== undefined && !spec?.index) {
          const steps = indexedSteps().map((s) => `${s.name} (${s.index})`);
          throw new UsageError(`--index goes with --merge-step ${steps.slice(0, -1).join(", ")} or ${steps.at(-1)}, not ${step}`);
        }
        if (step) {
          const { runMergeStep } = await import("../../pipeline/partitioned/merge-steps.ts");
          const done = await interruptible(r, `merge step ${step} is not finished (its folder in ${join(outDir, ".work", "merge")} is not complete); rerun the same command`, () =>
            runMergeStep(options, args.merge as string[], { step, index: args.index, packJobs: args["pack-jobs"] }),
          );
          if (mode === "json") {
            const totals = done.manifest ? { total_tokens: done.manifest.total_tokens, total_sequences: done.manifest.total_sequences } : {};
            process.stdout.write(JSON.stringify({ type: "done", out: outDir, step, index: args.index, summary: done.summary, next: done.next, ...totals }) + "\n");
          } else {
            if (done.manifest) process.stdout.write(`${mixtureTable(done.manifest)}\n\n`);
            process.stdout.write(`${done.summary}\n${done.next.map((n) => `next: ${n}\n`).join("")}`);
          }
          return;
        }
        if (slice) {
          const { buildPartition } = await import("../../pipeline/partitioned/partition.ts");
          const rec = await interruptible(r, `partition ${slice.index}/${slice.count} in ${outDir} is not finished (it has no partition.json); rerun the same command to continue`, () =>
            buildPartition(options, slice),
          );
          const files = rec.sources.reduce((a, s) => a + s.files.filter((f) => f.sha256 !== null).length, 0);
          if (mode === "json") process.stdout.write(JSON.stringify({ type: "done", out: outDir, partition: slice, files, documents: rec.documents, tokens: rec.tokens }) + "\n");
          else
            process.stdout.write(
              `partition ${slice.index}/${slice.count}: ${files} file(s), ${rec.documents} documents after its own dedup, ${rec.tokens} tokens, in ${outDir}\n` +
                `when all ${slice.count} are done: chuxin-data build ${args.recipe} --merge DIR... (every partition's folder)\n`,
            );
          return;
        }
        // The build stages its output and moves it in only when whole, so an interrupt loses no finished
        // build; say so, and how to go on. Exiting releases the folder's lock (an exit handler).
        const merge = args.merge as string[] | undefined;
        const manifest = await interruptible(
          r,
          `${outDir} keeps its previous complete build, if it had one; rerun the same command to continue (tokenised chunks in ${join(outDir, ".work")} are reused)`,
          async () => (merge ? (await import("../../pipeline/partitioned/merge.ts")).mergePartitions(options, merge) : build(options)),
        );
        if (mode === "json") process.stdout.write(JSON.stringify({ type: "done", out: outDir, total_tokens: manifest.total_tokens, total_sequences: manifest.total_sequences }) + "\n");
        else {
          process.stdout.write(
            `${mixtureTable(manifest)}\n\nwrote ${manifest.total_sequences.toLocaleString("en-US")} sequences (${manifest.total_tokens.toLocaleString("en-US")} tokens) in ${manifest.shards.length} shard(s) to ${outDir}\n`,
          );
        }
      },
    )
    .command(
      "plan <recipe>",
      "resolve sources and show what a build would take from each, without writing shards",
      common,
      async (args) => {
        const outDir = args.out ? resolve(args.out) : await defaultOut(args.recipe!);
        const memoryBytes = await memoryOption(args.memory);
        const workers = await workersOption(args.workers);
        const mode = outputMode(args.json);
        const r = await progressRenderer(mode);
        const { planBuild } = await pipeline();
        try {
          const { plans, disk } = await planBuild({ recipePath: args.recipe!, outDir, workers, locked: args.locked, lockPath: args.lock, tokenizerImpl: args["tokenizer-impl"] as "native" | "js", force: args.force, memoryBytes, diskCheck: args["disk-check"], sink: r.sink });
          r.stop();
          const rows = plans.map((p) => ({
            name: p.name,
            documents_available: p.documentsAvailable,
            tokens_available: p.tokensAvailable,
            documents_selected: p.documentsSelected,
            tokens_selected: p.tokensSelected,
            target_tokens: p.targetTokens,
            epochs: Number(p.epochs.toFixed(4)),
            target_share: Number(p.targetShare.toFixed(6)),
          }));
          const diskRow = { shard_bytes: disk.shards, work_bytes: disk.work, free_bytes: disk.free ?? null };
          if (mode === "json") process.stdout.write(JSON.stringify({ type: "plan", sources: rows, disk: diskRow }) + "\n");
          else {
            process.stdout.write("| source | docs available | tokens available | docs selected | tokens selected | epochs | target share |\n|---|---:|---:|---:|---:|---:|---:|\n");
            // Counts with separators, epochs and shares at one precision, as the build's mixture table prints them.
            const n = (x: number) => x.toLocaleString("en-US");
            for (const p of rows) {
              process.stdout.write(`| ${p.name} | ${n(p.documents_available)} | ${n(p.tokens_available)} | ${n(p.documents_selected)} | ${n(p.tokens_selected)} | ${p.epochs.toFixed(3)} | ${(100 * p.target_share).toFixed(3)}% |\n`);
            }
            const { formatSize } = await import("../../util/size.ts");
            process.stdout.write(
              `\ndisk: the shards need ${formatSize(disk.shards)}; ${outDir}/.work holds ${formatSize(disk.work)} (the database and token chunks the build reuses)` +
                `${disk.free !== undefined ? `; ${formatSize(disk.free)} free there${disk.shards > disk.free ? " — NOT ENOUGH for the shards" : ""}` : ""}\n`,
            );
          }
        } catch (error) {
          r.stop(true);
          throw error;
        }
      },
    )
    .command(
      "validate <recipe>",
      "check a recipe offline: its fields, local files and their text columns (Hub sources are checked by build)",
      (c) =>
        c
          .positional("recipe", { type: "string", demandOption: true })
          .option("lock", { type: "string", describe: "the lock naming each Hub source's files (default: out/<name>/recipe.lock.json when a build left one)" }),
      async (args) => {
        const [{ validateRecipe }, { readLock }, { existsSync }] = await Promise.all([import("../../pipeline/validate.ts"), import("../../pipeline/lock.ts"), import("node:fs")]);
        const { LOCK } = await import("../../shards/layout.ts");
        const lockPath = args.lock ?? join(await defaultOut(args.recipe!), LOCK);
        const lock = args.lock !== undefined || existsSync(lockPath) ? await readLock(lockPath) : undefined;
        const v = await validateRecipe(args.recipe!, lock);
        process.stdout.write(
          `${args.recipe}: ok (${v.sources} sources, sequence_length ${v.sequenceLength})\n` +
            v.checked.map((l) => `  checked: ${l}\n`).join("") +
            v.unchecked.map((l) => `  not checked: ${l}\n`).join(""),
        );
      },
    )
    .command(
      "schema",
      "print the recipe JSON Schema (for editor autocompletion); --plan: the training plan's",
      (c) => c.option("plan", { type: "boolean", default: false, describe: "the schema of train --plan files instead" }),
      async (args) => {
        const schema = args.plan ? (await import("../../train/plan.ts")).planJsonSchema() : (await import("../../recipe/schema.ts")).recipeJsonSchema();
        process.stdout.write(JSON.stringify(schema, null, 2) + "\n");
      },
    );
}
