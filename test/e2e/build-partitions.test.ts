import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { MERGE_STEPS } from "../../src/pipeline/partitioned/merge-step-table.ts";
import { runCli, spawnAsync } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { binPath, repoRoot, sharedHub } from "../helpers/paths.ts";

const recipe = join(repoRoot, "recipes", "fixtures.yaml");
const SHARD_BYTES = ["--max-shard-bytes", "1000000"];

/** Every file a build leaves beside its work folder (shards, indexes, manifest, lock, MIXTURE.md, card). */
async function outputFiles(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) if (name !== ".work") files.set(name, await readFile(join(dir, name)));
  return files;
}

function assertSameBytes(want: Map<string, Buffer>, got: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...got.keys()], [...want.keys()], what);
  for (const [name, bytes] of want) assert.ok(bytes.equals(got.get(name)!), `${what}: ${name} differs from the single build's`);
}

describe("build --partition i/N and --merge: the bytes of a single build", () => {
  let server: HubServer;
  let work: string;
  let env: Record<string, string>;
  let single: Map<string, Buffer>;
  const part = (i: number, n: number) => join(work, `p${i}of${n}`);
  const partition = (i: number, n: number, extra: string[] = []) => runCli(["build", recipe, "--partition", `${i}/${n}`, "--out", part(i, n), ...extra], { env });

  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-partitions-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    const r = await runCli(["build", recipe, "--out", join(work, "single"), ...SHARD_BYTES], { env });
    assert.equal(r.code, 0, r.stderr);
    single = await outputFiles(join(work, "single"));
    assert.ok(single.size > 6, "several shards");
  });
  after(async () => {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("merges 1 partition, and 3 (two at once, one killed mid-way and rerun), into the single build's shards, indexes, manifest, lock and MIXTURE.md", async () => {
    const one = await partition(0, 1);
    assert.equal(one.code, 0, one.stderr);
    const m1 = await runCli(["build", recipe, "--merge", part(0, 1), "--out", join(work, "merged-1"), ...SHARD_BYTES], { env });
    assert.equal(m1.code, 0, m1.stderr);
    assertSameBytes(single, await outputFiles(join(work, "merged-1")), "1 partition");

    const [a, b] = await Promise.all([partition(0, 3), partition(1, 3)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    // Partition 2 is killed once it is tokenising: it must not look finished, and the merge must say what to rerun.
    const child = spawn(process.execPath, [binPath, "build", recipe, "--partition", "2/3", "--out", part(2, 3), "--json"], {
      env: { ...process.env, CI: "true", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let killedAt = "";
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (d: Buffer) => {
        if (!killedAt && d.toString().includes('"type":"stage_start","stage":"tokenize"')) {
          killedAt = "tokenize";
          child.kill("SIGKILL");
        }
      });
      child.on("close", () => resolve());
    });
    assert.equal(killedAt, "tokenize", "killed mid-way");
    assert.ok(!existsSync(join(part(2, 3), "partition.json")), "a killed partition leaves no partition.json");
    const early = await runCli(["build", recipe, "--merge", part(0, 3), part(1, 3), part(2, 3), "--out", join(work, "merged-3")], { env });
    assert.equal(early.code, 2, early.stderr);
    assert.match(early.stderr, /p2of3: no partition\.json, so this is not a finished partition.*--partition i\/N --out .*p2of3/);
    assert.ok(!existsSync(join(work, "merged-3", "manifest.json")));

    const rerun = await partition(2, 3);
    assert.equal(rerun.code, 0, rerun.stderr);
    // Partitions in any order on the command line.
    const m3 = await runCli(["build", recipe, "--merge", part(2, 3), part(0, 3), part(1, 3), "--out", join(work, "merged-3"), ...SHARD_BYTES], { env });
    assert.equal(m3.code, 0, m3.stderr);
    assertSameBytes(single, await outputFiles(join(work, "merged-3")), "3 partitions");
    // Dedup across partitions happened: the fixture's planted duplicates span files that different partitions read.
    const records = await Promise.all([0, 1, 2].map(async (i) => JSON.parse(await readFile(join(part(i, 3), "partition.json"), "utf8"))));
    const local = records.reduce((s, r) => s + r.duplicates, 0);
    const manifest = JSON.parse(single.get("manifest.json")!.toString());
    const total = manifest.sources.reduce((s: number, x: any) => s + x.duplicates_removed.total, 0);
    assert.ok(total > local, `the merge removed ${total - local} duplicates no single partition saw`);
    for (const r of records) assert.ok(r.sources.flatMap((s: any) => s.files).some((f: any) => f.sha256 !== null), "each partition read files");
  });

  it("merges as dependent steps (a dedup per hash range, plan, a scatter per partition, a gather per pack job, finish) into the single build's bytes, refusing a step run too early and naming the one to run", async () => {
    const parts = [0, 1, 2].map((i) => part(i, 3));
    const out = join(work, "steps-3");
    const step = (name: string, extra: string[] = []) => runCli(["build", recipe, "--merge", ...parts, "--out", out, "--merge-step", name, ...extra, ...SHARD_BYTES], { env });
    const noPlan = await step("scatter", ["--index", "0"]);
    assert.equal(noPlan.code, 2, noPlan.stderr);
    assert.match(noPlan.stderr, /--merge-step scatter runs after plan, which is not done; run chuxin-data build .* --merge-step plan first/);
    const badRange = await step("dedup", ["--index", "3"]);
    assert.equal(badRange.code, 2, badRange.stderr);
    assert.match(badRange.stderr, /--merge-step dedup needs --index N, a hash range, 0 to 2/);
    // Two hash ranges at once; the plan refuses to start while one is missing.
    const dedups = await Promise.all([0, 2].map((h) => step("dedup", ["--index", String(h)])));
    for (const r of dedups) assert.equal(r.code, 0, r.stderr);
    const partial = await step("plan", ["--pack-jobs", "3"]);
    assert.equal(partial.code, 2, partial.stderr);
    assert.match(partial.stderr, /the merge's dedup steps are not all done: range\(s\) 1 not finished\. Run chuxin-data build .* --merge-step dedup --index h for each/);
    const d1 = await step("dedup", ["--index", "1"]);
    assert.equal(d1.code, 0, d1.stderr);
    // A range's survivors changed after its job wrote them: the plan names the job to rerun.
    const kept1 = join(out, ".work", "merge", "dedup-1", "kept.parquet");
    const keptBytes = await readFile(kept1);
    await writeFile(kept1, Buffer.concat([keptBytes, Buffer.from("x")]));
    const tampered = await step("plan", ["--pack-jobs", "3"]);
    assert.equal(tampered.code, 1, tampered.stderr);
    assert.match(tampered.stderr, /dedup-1\/kept\.parquet is not the file its dedup step wrote; rerun chuxin-data build .* --merge-step dedup --index 1/);
    await writeFile(kept1, keptBytes);
    // The ranges together remove the single build's duplicates, and keep what the partitions kept less the copies
    // one partition's document beats in another.
    const ranges = await Promise.all([0, 1, 2].map(async (h) => JSON.parse(await readFile(join(out, ".work", "merge", `dedup-${h}`, "dedup.json"), "utf8"))));
    const sum = (f: (r: any) => number) => ranges.reduce((a, r) => a + f(r), 0);
    const singleManifest = JSON.parse(single.get("manifest.json")!.toString());
    const removed = singleManifest.sources.reduce((a: number, s: any) => a + s.duplicates_removed.total, 0);
    assert.equal(sum((r) => r.per_source.reduce((a: number, s: any) => a + s.within + s.across, 0)), removed);
    assert.ok(ranges.every((r) => r.kept.documents > 0 && r.cross_duplicates >= 0), "every range keeps documents");
    const records = await Promise.all(parts.map(async (d) => JSON.parse(await readFile(join(d, "partition.json"), "utf8"))));
    assert.equal(sum((r) => r.kept.documents), records.reduce((a, r) => a + r.documents, 0) - sum((r) => r.cross_duplicates));
    // More pack jobs than divide the shards evenly: ranges of different sizes.
    const plan = await step("plan", ["--pack-jobs", "3"]);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /The global dedup came from the 3 dedup step\(s\)/);
    const planned = JSON.parse(await readFile(join(out, ".work", "merge", "plan", "plan.json"), "utf8"));
    const sizes = planned.ranges.map((r: { first: number; end: number }) => r.end - r.first);
    // The shards and their indexes, less the manifest, lock, MIXTURE.md, README.md and tokenizer.json.
    assert.equal(sizes.reduce((a: number, b: number) => a + b, 0), (single.size - 5) / 2, "the pack jobs share every shard");
    assert.notEqual(Math.min(...sizes), Math.max(...sizes), "uneven ranges");
    const early = await step("gather", ["--index", "0"]);
    assert.equal(early.code, 2, early.stderr);
    assert.match(early.stderr, /--merge-step gather runs after scatter, whose job\(s\) 0, 1, 2 of 3 are not done; run chuxin-data build .* --merge-step scatter --index N for each first/);
    const badIndex = await step("scatter", ["--index", "3"]);
    assert.equal(badIndex.code, 2, badIndex.stderr);
    assert.match(badIndex.stderr, /--merge-step scatter needs --index N, a partition, 0 to 2/);
    const scatters = await Promise.all([0, 1, 2].map((i) => step("scatter", ["--index", String(i)])));
    for (const r of scatters) assert.equal(r.code, 0, r.stderr);
    const [g0, g2] = await Promise.all([step("gather", ["--index", "0"]), step("gather", ["--index", "2"])]);
    assert.equal(g0.code, 0, g0.stderr);
    assert.equal(g2.code, 0, g2.stderr);
    // What a gather stopped mid-way leaves (its unfinished .tmp folder) does not count as done.
    const stopped = join(out, ".work", "merge", "gather-1.tmp");
    await mkdir(stopped, { recursive: true });
    await writeFile(join(stopped, "shard-00001.npy"), "part of a shard");
    const tooSoon = await step("finish");
    assert.equal(tooSoon.code, 2, tooSoon.stderr);
    assert.match(tooSoon.stderr, /--merge-step finish runs after gather, whose job\(s\) 1 of 3 are not done; run chuxin-data build .* --merge-step gather --index N for each first/);
    assert.ok(!existsSync(join(out, "manifest.json")), "no manifest before every pack job is done");
    const g1 = await step("gather", ["--index", "1"]);
    assert.equal(g1.code, 0, g1.stderr);
    const finish = await step("finish");
    assert.equal(finish.code, 0, finish.stderr);
    assertSameBytes(single, await outputFiles(out), "3 partitions merged as steps by 3 pack jobs");
    assert.ok(!existsSync(join(out, ".work", "merge")), "the plan and the bins are removed once the build is in place");
  });

  it("refuses a partition whose token chunk or partition.json changed after it was written, in the merge and its steps, naming what to rerun", async () => {
    const dir = part(1, 3);
    const all = [0, 1, 2].map((i) => part(i, 3));
    const recordPath = join(dir, "partition.json");
    const recordText = await readFile(recordPath, "utf8");
    const record = JSON.parse(recordText);
    const chunk = join(dir, "tokens", record.chunks[0].file);
    const original = await readFile(chunk);
    const rerun = /its bytes differ from the sha256 recorded when it was written; rerun that partition: chuxin-data build .* --partition 1\/3 --out .*p1of3/;
    try {
      // A byte in the middle (an id) and the last byte: the header and the size still look right.
      for (const at of [Math.floor(original.length / 2), original.length - 1]) {
        const bad = Buffer.from(original);
        bad[at]! ^= 0x01;
        await writeFile(chunk, bad);
        const merged = await runCli(["build", recipe, "--merge", ...all, "--out", join(work, "tampered")], { env });
        assert.equal(merged.code, 1, merged.stderr);
        assert.match(merged.stderr, rerun);
        assert.ok(merged.stderr.includes(record.chunks[0].file), "names the chunk");
        assert.ok(!existsSync(join(work, "tampered", "manifest.json")), "no build claims to be complete");
      }
      const step = (name: string, extra: string[] = []) => runCli(["build", recipe, "--merge", ...all, "--out", join(work, "tampered-steps"), "--merge-step", name, ...extra], { env });
      const plan = await step("plan");
      assert.equal(plan.code, 0, plan.stderr);
      const scatter = await step("scatter", ["--index", "1"]);
      assert.equal(scatter.code, 1, scatter.stderr);
      assert.match(scatter.stderr, rerun);
    } finally {
      await writeFile(chunk, original);
    }
    // The counts a merge adds up come from a record nobody edited.
    const edited = JSON.parse(recordText);
    edited.sources[0].documents_read += 5;
    await writeFile(recordPath, JSON.stringify(edited, null, 2) + "\n");
    try {
      const merged = await runCli(["build", recipe, "--merge", ...all, "--out", join(work, "tampered")], { env });
      assert.equal(merged.code, 1, merged.stderr);
      assert.match(merged.stderr, /p1of3\/partition\.json: changed since the partition wrote it .* rerun that partition: chuxin-data build .* --partition 1\/3 --out .*p1of3/);
      assert.ok(!existsSync(join(work, "tampered", "manifest.json")));
    } finally {
      await writeFile(recordPath, recordText);
    }
  });

  it("refuses, before writing, a merge missing a partition, mixing two splits, or under another recipe, naming the fix", async () => {
    const missing = await runCli(["build", recipe, "--merge", part(0, 3), part(1, 3), "--out", join(work, "bad")], { env });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing partition\(s\) 2\/3: build each with `chuxin-data build .* --partition i\/3 --out DIR`/);
    const mixed = await runCli(["build", recipe, "--merge", part(0, 3), part(0, 1), "--out", join(work, "bad")], { env });
    assert.equal(mixed.code, 2);
    assert.match(mixed.stderr, /is partition 0\/1 and .* is one of 3/);
    const twice = await runCli(["build", recipe, "--merge", part(0, 3), part(0, 3), part(1, 3), "--out", join(work, "bad")], { env });
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /are both partition 0\/3; pass each partition once/);
    const other = join(work, "other.yaml");
    await writeFile(other, (await readFile(recipe, "utf8")).replace("seed: 7", "seed: 8"));
    const changed = await runCli(["build", other, "--merge", part(0, 3), part(1, 3), part(2, 3), "--out", join(work, "bad")], { env });
    assert.equal(changed.code, 2);
    assert.match(changed.stderr, /was built from a recipe with sha256 [0-9a-f]{64}, but .*other\.yaml has sha256/);
    const flags: [string[], RegExp][] = [
      [["--merge-step", "plan"], /--merge-step plan needs the partitions' folders: --merge DIR/],
      [["--index", "1"], /--index and --pack-jobs go with --merge-step/],
      [["--merge", part(0, 3), part(1, 3), part(2, 3), "--merge-step", "finish", "--index", "1"], /--index goes with --merge-step dedup \(a hash range\), minhash \(a band range\), scatter \(a partition\) or gather \(a pack job of the plan\), not finish/],
      [["--merge", part(0, 3), part(1, 3), part(2, 3), "--merge-step", "scatter", "--index", "0", "--pack-jobs", "2"], /--pack-jobs is the plan's: pass it with --merge-step plan/],
      [["--merge", part(0, 3), part(1, 3), part(2, 3), "--merge-step", "plan", "--pack-jobs", "0"], /--pack-jobs 0: expected a whole number from 1 to 1000/],
    ];
    for (const [args, message] of flags) {
      const r = await runCli(["build", recipe, "--out", join(work, "bad"), ...args], { env });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    // A partition that gets no file (the sample recipe has one) still works, and says so.
    const empty = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--partition", "1/2", "--out", join(work, "empty-part")], { env });
    assert.equal(empty.code, 0, empty.stderr);
    assert.match(empty.stderr, /warning: partition 1\/2 reads no file: the recipe has 1 input file\(s\), dealt one a partition in turn/);
    const badSlice = await runCli(["build", recipe, "--partition", "3/3"], { env });
    assert.equal(badSlice.code, 2);
    assert.match(badSlice.stderr, /--partition 3\/3: expected i\/N with 0 <= i < N/);
    assert.ok(!existsSync(join(work, "bad", "manifest.json")));
  });

  it("the shipped Slurm array and Kubernetes Indexed Job scripts build and merge to the same bytes", async () => {
    const cli = `${process.execPath} ${binPath}`;
    const jobs = join(work, "jobs");
    const base = { ...process.env, ...env, CI: "true", CHUXIN_DATA: cli, RECIPE: recipe, WORK: jobs, MEMORY: "1GB" };
    // Slurm array task 0 of 2: sbatch runs the script with bash and these variables set.
    const slurm = await spawnAsync("bash", [join(repoRoot, "cluster", "slurm", "build.sbatch")], {
      env: { ...base, SLURM_ARRAY_TASK_ID: "0", SLURM_ARRAY_TASK_COUNT: "2", SLURM_ARRAY_JOB_ID: "42" },
    });
    assert.equal(slurm.code, 0, slurm.stderr);
    // Index 1 as a pod of the Indexed Job: its container's command, with its env, and the index Kubernetes sets.
    const job = parse(await readFile(join(repoRoot, "cluster", "kubernetes", "build-job.yaml"), "utf8"));
    assert.equal(job.spec.completionMode, "Indexed");
    const container = job.spec.template.spec.containers[0];
    const podEnv = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    assert.equal(Number(podEnv.PARTITIONS), job.spec.completions, "PARTITIONS matches completions");
    const pod = await spawnAsync(container.command[0], container.command.slice(1), {
      env: { ...base, ...podEnv, PARTITIONS: "2", RECIPE: recipe, WORK: jobs, HF_HOME: env.HF_HOME!, JOB_COMPLETION_INDEX: "1" },
    });
    assert.equal(pod.code, 0, pod.stderr);
    // The dependent merge job.
    const merge = await spawnAsync("bash", [join(repoRoot, "cluster", "slurm", "merge.sbatch")], {
      env: { ...base, PARTITIONS: "2", OUT: join(jobs, "build"), MERGE_ARGS: SHARD_BYTES.join(" ") },
    });
    assert.equal(merge.code, 0, merge.stderr);
    assertSameBytes(single, await outputFiles(join(jobs, "build")), "Slurm + Kubernetes partitions");
    // The merge as dependent steps: a dedup, the plan and the gathers as Slurm tasks, a dedup, the scatters and finish
    // as the Kubernetes Jobs' pods.
    // Both write $WORK/build: WORK is a folder of links to the partitions above.
    const stepsWork = join(work, "jobs-steps");
    await mkdir(stepsWork, { recursive: true });
    for (const i of [0, 1]) await symlink(join(jobs, `part-${i}`), join(stepsWork, `part-${i}`));
    const steps = { ...base, PARTITIONS: "2", PACK_JOBS: "2", WORK: stepsWork, MERGE_ARGS: SHARD_BYTES.join(" ") };
    const slurmStep = (stepEnv: Record<string, string>) => spawnAsync("bash", [join(repoRoot, "cluster", "slurm", "merge-step.sbatch")], { env: { ...steps, ...stepEnv } });
    const k8sJobs = new Map(
      parseAllDocuments(await readFile(join(repoRoot, "cluster", "kubernetes", "merge-steps.yaml"), "utf8")).map((d) => {
        const j = d.toJS();
        return [j.metadata.name as string, j];
      }),
    );
    assert.deepEqual([...k8sJobs.keys()], MERGE_STEPS.map((s) => `chuxin-merge-${s}`));
    for (const name of ["dedup", "minhash", "scatter", "gather"]) assert.equal(k8sJobs.get(`chuxin-merge-${name}`).spec.completionMode, "Indexed");
    const k8sPod = (name: string, index?: number) => {
      const c = k8sJobs.get(name).spec.template.spec.containers[0];
      const podEnv = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]));
      return spawnAsync(c.command[0], c.command.slice(1), {
        env: { ...steps, ...podEnv, PARTITIONS: "2", PACK_JOBS: "2", RECIPE: recipe, WORK: stepsWork, ...(index !== undefined ? { JOB_COMPLETION_INDEX: String(index) } : {}) },
      });
    };
    // Hash range 0 as a Slurm array task, range 1 as a pod of the dedup Indexed Job.
    const dedup0 = await slurmStep({ STEP: "dedup", SLURM_ARRAY_TASK_ID: "0" });
    assert.equal(dedup0.code, 0, dedup0.stderr);
    const dedup1 = await k8sPod("chuxin-merge-dedup", 1);
    assert.equal(dedup1.code, 0, dedup1.stderr);
    // This recipe has no dedup.minhash: the minhash steps have nothing to do, and say so.
    const minhash0 = await k8sPod("chuxin-merge-minhash", 0);
    assert.equal(minhash0.code, 0, minhash0.stderr);
    assert.match(minhash0.stdout, /the recipe has no dedup\.minhash; nothing to do/);
    const planned = await slurmStep({ STEP: "plan" });
    assert.equal(planned.code, 0, planned.stderr);
    assert.match(planned.stdout, /The global dedup came from the 2 dedup step\(s\)/);
    for (const i of [0, 1]) {
      const r = await k8sPod("chuxin-merge-scatter", i);
      assert.equal(r.code, 0, r.stderr);
    }
    const noArray = await slurmStep({ STEP: "gather" });
    assert.notEqual(noArray.code, 0);
    assert.match(noArray.stderr, /submit STEP=gather as an array job/);
    for (const j of [0, 1]) {
      const r = await slurmStep({ STEP: "gather", SLURM_ARRAY_TASK_ID: String(j) });
      assert.equal(r.code, 0, r.stderr);
    }
    const finished = await k8sPod("chuxin-merge-finish");
    assert.equal(finished.code, 0, finished.stderr);
    assertSameBytes(single, await outputFiles(join(stepsWork, "build")), "Slurm + Kubernetes merge steps");
    // And a task started outside an array says what it needs.
    const bare = await spawnAsync("bash", [join(repoRoot, "cluster", "slurm", "build.sbatch")], { env: base });
    assert.notEqual(bare.code, 0);
    assert.match(bare.stderr, /submit as an array job/);
  });
});
