/** `publish data OUT` / `publish model RUN`: a release on the Hub (src/publish), with byte progress and commit URLs. */
import type { Argv } from "yargs";
import type { PublishEvent } from "../../publish/publish.ts";
import { redactSecrets, UsageError } from "../../util/errors.ts";
import { outputMode, spinnerFor } from "../render.ts";

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

function common(c: Argv): Argv {
  return c
    .option("repo", { type: "string", demandOption: true, describe: "the Hub repo, org/name (created if absent)" })
    .option("private", { type: "boolean", default: false, describe: "create the repo private" })
    .option("revision", { type: "string", default: "main", describe: "the branch to publish to (created if absent)" })
    .option("force", { type: "boolean", default: false, describe: "replace what a branch holds when it is not this release (its other files are deleted)" })
    .option("license", { type: "string", describe: "license id for the card's metadata (e.g. apache-2.0)" })
    .option("dry-run", { type: "boolean", default: false, describe: "list what would be uploaded where; needs no token" })
    .option("json", { type: "boolean", default: false, describe: "NDJSON events on stdout" });
}

async function run(
  kind: "dataset" | "model",
  a: Record<string, unknown>,
  release: () => Promise<{ branches: import("../../publish/release.ts").ReleaseBranch[]; warnings: string[] }>,
): Promise<void> {
  const repoId = a.repo as string;
  if (!REPO_ID.test(repoId)) throw new UsageError(`--repo ${repoId}: expected org/name (letters, digits, '.', '_', '-')`);
  const [{ hubEnv }, { HubUploader }, { publish }, { formatSize }] = await Promise.all([
    import("../../hub/env.ts"),
    import("../../hub/upload.ts"),
    import("../../publish/publish.ts"),
    import("../../util/size.ts"),
  ]);
  const mode = outputMode(a.json as boolean);
  const spinner = (await spinnerFor(a.json as boolean))?.start("preparing the release");
  let lastLine = 0;
  const started = performance.now();
  const say = (line: string) => (spinner ? spinner.info(line).start() : process.stderr.write(line + "\n"));
  const onEvent = (e: PublishEvent) => {
    if (mode === "json") return void process.stdout.write(JSON.stringify({ ...e, time: new Date().toISOString() }) + "\n");
    if (e.type === "upload") {
      const seconds = (performance.now() - started) / 1000;
      const mbs = e.sent / 1e6 / Math.max(seconds, 1e-3);
      const eta = mbs > 0 ? ` ETA ${Math.round((e.total - e.sent) / 1e6 / mbs)}s` : "";
      const text = `${e.branch}: uploading ${formatSize(e.sent)} of ${formatSize(e.total)} ${mbs.toFixed(1)} MB/s${eta} (${e.path})`;
      if (spinner) spinner.text = text;
      else if (performance.now() - lastLine > 10_000) (lastLine = performance.now()), process.stderr.write(text + "\n");
    } else if (e.type === "plan") {
      say(`${e.branch}: ${e.upload.length} of ${e.files} file(s) to upload (${formatSize(e.upload_bytes)} of ${formatSize(e.bytes)})${a["dry-run"] && e.upload.length ? `: ${e.upload.join(", ")}` : ""}`);
    } else if (e.type === "commit") say(`${e.branch}: committed ${e.files} file(s): ${e.url}`);
    else if (e.type === "unchanged") say(`${e.branch}: the Hub already holds this release (commit ${e.commit}); nothing uploaded`);
    else say(e.message);
  };
  try {
    const { branches, warnings } = await release();
    for (const w of warnings) onEvent({ type: "note", message: `warning: ${w}` });
    const uploader = new HubUploader(hubEnv(), { onRetry: (what, attempt, error) => onEvent({ type: "note", message: `retry ${attempt}: ${what}: ${redactSecrets(error)}` }) });
    const { commits } = await publish(uploader, { type: kind, id: repoId }, branches, { private: a.private as boolean, force: a.force as boolean, dryRun: a["dry-run"] as boolean, onEvent });
    spinner?.stop();
    if (mode !== "json") process.stderr.write(a["dry-run"] ? "dry run: nothing was uploaded\n" : `done: ${commits.length} commit(s)${commits.length ? "" : " (nothing new)"}\n`);
  } catch (error) {
    spinner?.fail("publish failed");
    throw error;
  }
}

export function registerPublish(y: Argv): Argv {
  return y.command("publish", "put a build (dataset repo) or a training run (model repo) on the Hub, as a release anyone can pin", (p) =>
    p
      .command(
        "data <out>",
        "a build's recipe, lock, manifest, mixture and card (--with-shards: the shards too) as a dataset repo",
        (c) =>
          common(c)
            .positional("out", { type: "string", describe: "a build's output folder" })
            .option("with-shards", { type: "boolean", default: false, describe: "upload the shards and their document indexes (through LFS)" })
            .option("recipe", { type: "string", describe: "the recipe file (default: the one the manifest names, in . or recipes/)" })
            .option("language", { type: "array", string: true, describe: "language codes for the card (e.g. en zh)" }),
        async (a) => {
          const { dataRelease } = await import("../../publish/data-release.ts");
          await run("dataset", a, async () => {
            const r = await dataRelease({
              outDir: a.out as string,
              recipe: a.recipe as string | undefined,
              withShards: a["with-shards"] as boolean,
              branch: a.revision as string,
              license: a.license as string | undefined,
              languages: a.language as string[] | undefined,
            });
            return r;
          });
        },
      )
      .command(
        "model <run>",
        "a run's final checkpoint, card and training log as a model repo; every intermediate checkpoint as a branch (a plan's folder: every stage, each on its branch, the last on main)",
        (c) =>
          common(c)
            .positional("run", { type: "string", describe: "a run folder, or a train --plan folder" })
            .option("data-repo", { type: "string", describe: "the dataset repo its data was published to (named in the card)" }),
        async (a) => {
          const { isPlanFolder, planRelease } = await import("../../publish/plan-release.ts");
          const options = { dataRepo: a["data-repo"] as string | undefined, branch: a.revision as string, license: a.license as string | undefined };
          if (isPlanFolder(a.run as string)) await run("model", a, () => planRelease({ planDir: a.run as string, ...options }));
          else {
            const { modelRelease } = await import("../../publish/model-release.ts");
            await run("model", a, () => modelRelease({ runDir: a.run as string, ...options }));
          }
        },
      )
      .demandCommand(1, "name what to publish: publish data OUT or publish model RUN"),
  );
}
