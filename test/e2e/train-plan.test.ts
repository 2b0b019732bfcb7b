import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { mulberry32 } from "../../src/train/data.ts";
import { learningRate } from "../../src/train/schedule.ts";
import { encodeSafetensors, readSafetensors } from "../../src/train/safetensors.ts";
import { sha256File } from "../../src/util/hash.ts";
import { HubClient } from "../../src/hub/client.ts";
import { hubEnv } from "../../src/hub/env.ts";
import { checkpointBranch } from "../../src/publish/release.ts";
import { runCli } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { binPath, repoRoot, sharedHub } from "../helpers/paths.ts";

const TOKEN = "hf_loopbackwritetoken1234";

/** A model of the tiny preset's shape whose positions end at 256, so the extension stage must raise them. */
const TINY_256 = "nLayers: 2\nhidden: 64\nnHeads: 4\nffn: 172\nvocab: 102400\nmaxSeq: 256\n";

function planText(o: { extendTheta?: boolean; extendModel?: string } = {}): string {
  return `name: t
defaults: { model: tiny-256.yaml, seed: 3, micro_batch: 2, eval_every: 0, save_every: 2, threads: 2 }
stages:
  - name: pretrain
    data: ${join(repoRoot, "recipes", "sample.yaml")}
    context: 256
    steps: 6
    lr: 3.0e-3
    warmup_steps: 2
  - name: cooldown
    data: ${join(repoRoot, "recipes", "fixtures.yaml")}
    context: 256
    steps: 6
    schedule: wsd
    lr: 1.0e-3
    min_lr: 0
    warmup_steps: 0
    decay_fraction: 0.5
  - name: extend
    context: 1024
${o.extendTheta === false ? "" : "    rope_theta: 500000\n    rope_scaling: yarn\n    rope_factor: 4\n"}${o.extendModel ? `    model: ${o.extendModel}\n` : ""}    micro_batch: 1
    steps: 4
    lr: 1.0e-4
    warmup_steps: 1
`;
}

const metrics = async (run: string) =>
  (await readFile(join(run, "metrics.jsonl"), "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { step: number; loss?: number; lr?: number });


describe("train --plan: stages, each from the last", () => {
  let server: HubServer, work: string, env: Record<string, string>;
  const hubRoot = () => join(work, "hub");
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "chuxin-plan-"));
    // The shared fixtures, plus a model repo this suite writes.
    await mkdir(join(hubRoot(), "models", "test"), { recursive: true });
    await symlink(join(sharedHub, "datasets"), join(hubRoot(), "datasets"));
    for (const org of await readdir(join(sharedHub, "models"))) await symlink(join(sharedHub, "models", org), join(hubRoot(), "models", org));
    server = await new HubServer({ root: hubRoot(), writeTokens: [TOKEN] }).start();
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    await writeFile(join(work, "tiny-256.yaml"), TINY_256);
    await writeFile(join(work, "plan.yaml"), planText());
  });
  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("runs pretrain → WSD cool-down on a second build → extension to 1,024 with θ 500,000", async () => {
    const out = join(work, "plan");
    const r = await runCli(["train", "--plan", join(work, "plan.yaml"), "--out", out], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stage 2\/3 starting cooldown/);
    assert.match(r.stderr, /max_position_embeddings 256 → 1024 \(RoPE θ 500000, yarn × 4 of 256\)/);
    const lock = JSON.parse(await readFile(join(out, "plan.lock.json"), "utf8"));
    assert.deepEqual(lock.stages.map((s: { name: string; step: number }) => [s.name, s.step]), [["pretrain", 6], ["cooldown", 6], ["extend", 4]]);
    for (const stage of lock.stages) {
      assert.equal(await sha256File(join(out, stage.checkpoint, "model.safetensors")), stage.files["model.safetensors"]);
    }

    // Each stage starts from the previous one's final checkpoint, recorded with its files' sha256s.
    const cooldown = JSON.parse(await readFile(join(out, "cooldown", "run_config.json"), "utf8"));
    assert.equal(cooldown.init_source.source, join(out, "pretrain", "checkpoint-0000006"));
    assert.equal(cooldown.init_source.files["model.safetensors"], lock.stages[0].files["model.safetensors"]);
    assert.equal(cooldown.data, join(out, "data", "fixtures"));

    // WSD: the recorded learning rate of every step is the formula's.
    for (const m of (await metrics(join(out, "cooldown"))).filter((m) => m.lr !== undefined)) {
      const want = learningRate(m.step, { lr: 1e-3, minLr: 0, warmupSteps: 0, decaySteps: 6, kind: "wsd", decayFraction: 0.5, decayShape: "1-sqrt" });
      assert.equal(m.lr, want, `step ${m.step}`);
    }
    assert.deepEqual((await metrics(join(out, "cooldown"))).slice(0, 3).map((m) => m.lr), [1e-3, 1e-3, 1e-3]);

    // The extended model says so where transformers reads it.
    const config = JSON.parse(await readFile(join(out, "extend", "checkpoint-0000004", "config.json"), "utf8"));
    assert.equal(config.rope_theta, 500000);
    assert.deepEqual(config.rope_scaling, { rope_type: "yarn", factor: 4, original_max_position_embeddings: 256, beta_fast: 32, beta_slow: 1 });
    assert.equal(config.max_position_embeddings, 1024);

    // Stage 2's first step is what `train --init-from` of stage 1's checkpoint gives by hand with the same options.
    const manual = join(work, "manual");
    const m = await runCli(
      ["train", "--data", join(out, "data", "fixtures"), "--init-from", join(out, "pretrain"), "--out", manual, "--context", "256", "--micro-batch", "2", "--seed", "3",
        "--steps", "1", "--schedule", "wsd", "--lr", "1e-3", "--min-lr", "0", "--warmup-steps", "0", "--eval-every", "0", "--threads", "2"],
      { env },
    );
    assert.equal(m.code, 0, m.stderr);
    assert.equal((await metrics(manual))[0]!.loss, (await metrics(join(out, "cooldown")))[0]!.loss);

    // A plan run again without --resume is refused; with it, finished stages are skipped.
    const again = await runCli(["train", "--plan", join(work, "plan.yaml"), "--out", out], { env });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already holds this plan's stages; pass --resume/);
    const resumed = await runCli(["train", "--plan", join(work, "plan.yaml"), "--out", out, "--resume"], { env });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /stage 3\/3 already finished: extend/);

    // A lock edited to start a stage from outside the plan folder is refused, and the lock is left as it was.
    const lockText = await readFile(join(out, "plan.lock.json"), "utf8");
    const edited = JSON.parse(lockText);
    edited.stages[0].checkpoint = "../elsewhere/checkpoint-0000006";
    await writeFile(join(out, "plan.lock.json"), JSON.stringify(edited));
    const tampered = await runCli(["train", "--plan", join(work, "plan.yaml"), "--out", out, "--resume"], { env });
    assert.equal(tampered.code, 1);
    assert.match(tampered.stderr, /plan\.lock\.json: stage 'pretrain' names "\.\.\/elsewhere\/checkpoint-0000006" as its checkpoint, not one of pretrain\/checkpoint-\*/);
    await writeFile(join(out, "plan.lock.json"), lockText);
  });

  it("publish model PLAN_DIR: each stage on its branch, its checkpoints on <stage>-step-… branches, the last stage on main with a table of stages", async () => {
    const out = join(work, "plan");
    const r = await runCli(["publish", "model", out, "--repo", "chuxin/tiny-plan"], { env: { ...env, HF_TOKEN: TOKEN } });
    assert.equal(r.code, 0, r.stderr);
    const client = new HubClient(hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(work, "hf-readback"), HF_TOKEN: TOKEN }));
    const repo = { type: "model" as const, id: "chuxin/tiny-plan" };
    const files = async (branch: string) => {
      const commit = await client.resolveRevision(repo, branch);
      const got = new Map<string, string>();
      for (const f of await client.listFiles(repo, commit)) got.set(f.path, (await client.download(repo, commit, f)).localPath);
      return got;
    };
    const lock = JSON.parse(await readFile(join(out, "plan.lock.json"), "utf8"));
    const main = await files("main");
    assert.equal(await sha256File(main.get("model.safetensors")!), lock.stages[2].files["model.safetensors"]);
    assert.equal(JSON.parse(await readFile(main.get("config.json")!, "utf8")).rope_theta, 500000);
    for (const stage of ["pretrain", "cooldown", "extend"]) {
      assert.ok(main.has(`stages/${stage}/metrics.jsonl`), stage);
      const published = JSON.parse(await readFile(main.get(`stages/${stage}/run_config.json`)!, "utf8"));
      assert.doesNotMatch(JSON.stringify(published), new RegExp(work), `${stage}: no local path published`);
    }
    const card = await readFile(main.get("README.md")!, "utf8");
    assert.match(card, /\| 2 \| `cooldown` \| fixtures \| 3,072 \| 6 \| wsd \(decay 0\.5, 1-sqrt\), peak 0\.001, warmup 0 \| 256 \| 10,000 \| pretrain\/checkpoint-0000006 \| \d+\.\d{4} \|/);
    assert.match(card, /\| 3 \| `extend` \| fixtures \| 4,096 \| 4 \| .* \| 1,024 \| 500,000 \(yarn × 4\) \|/);
    assert.match(await readFile(main.get("loss.svg")!, "utf8"), />cooldown</);
    const cooldown = await files("cooldown");
    assert.equal(await sha256File(cooldown.get("model.safetensors")!), lock.stages[1].files["model.safetensors"]);
    const step2 = await files(`pretrain-${checkpointBranch(2, 2 * 512)}`);
    assert.equal(await sha256File(step2.get("model.safetensors")!), await sha256File(join(out, "pretrain", "checkpoint-0000002", "model.safetensors")));
  });

  it("eval --by-position on the extended stage: buckets of the held-out windows that add up to eval's loss, and a curve", async () => {
    const run = join(work, "plan", "extend");
    const whole = await runCli(["eval", "--checkpoint", run, "--json", "--threads", "2"], { env });
    assert.equal(whole.code, 0, whole.stderr);
    const byPosition = await runCli(["eval", "--checkpoint", run, "--by-position", "--bucket", "256", "--json", "--threads", "2"], { env });
    assert.equal(byPosition.code, 0, byPosition.stderr);
    const w = JSON.parse(whole.stdout) as { mean_loss: number; tokens: number };
    const p = JSON.parse(byPosition.stdout) as { buckets: { from: number; to: number; tokens: number; loss: number }[]; tokens: number; context: number; plot: string };
    assert.equal(p.context, 1024);
    assert.deepEqual(p.buckets.map((b) => b.from), p.buckets.map((_, i) => i * 256));
    assert.equal(p.tokens, w.tokens);
    const mean = p.buckets.reduce((a, b) => a + b.loss * b.tokens, 0) / p.tokens;
    assert.ok(Math.abs(mean - w.mean_loss) < 1e-9, `${mean} vs ${w.mean_loss}`);
    assert.match(await readFile(p.plot, "utf8"), /position in the document/);
    const refused = await runCli(["eval", "--checkpoint", run, "--bucket", "256"], { env });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--bucket and --plot go with --by-position/);
  });

  it("eval --needle on the extended stage: a cell per length × depth with its prompt, needle.json and a heatmap; bad lengths and short haystacks refused first", async () => {
    const run = join(work, "plan", "extend");
    const text = join(work, "haystack.txt");
    await writeFile(text, Array.from({ length: 120 }, (_, i) => `Paragraph ${i}: the river ran past the mill, and the miller counted the sacks of grain.`).join("\n"));
    const out = join(work, "needle");
    const r = await runCli(["eval", "--checkpoint", run, "--needle", "--lengths", "256,512", "--depths", "0,0.5,1", "--haystack", text, "--output", out, "--json", "--threads", "2"], { env });
    assert.equal(r.code, 0, r.stderr);
    const results = JSON.parse(await readFile(join(out, "needle.json"), "utf8"));
    assert.deepEqual(results.cells.map((c: { length: number; depth: number; prompt_tokens: number }) => [c.length, c.depth, c.prompt_tokens]), [
      [256, 0, 256], [256, 0.5, 256], [256, 1, 256], [512, 0, 512], [512, 0.5, 512], [512, 1, 512],
    ]);
    for (const c of results.cells) assert.equal(c.correct, c.answer.match(/\d+/)?.[0] === c.number);
    assert.match(await readFile(join(out, "needle.svg"), "utf8"), /needle depth/);
    // The same seed gives the same numbers.
    const again = await runCli(["eval", "--checkpoint", run, "--needle", "--lengths", "256", "--depths", "0.5", "--haystack", text, "--output", join(work, "needle-2"), "--json", "--threads", "2"], { env });
    assert.equal(JSON.parse(again.stdout).cells[0].number, results.cells[1].number);
    const long = await runCli(["eval", "--checkpoint", run, "--needle", "--lengths", "1K,2K", "--haystack", text, "--threads", "2"], { env });
    assert.equal(long.code, 2);
    assert.match(long.stderr, /--lengths 2048: a prompt of 2048 tokens and its answer \(12\) go past the model's 1024 positions; use lengths up to 1012/);
    const shortText = join(work, "short.txt");
    await writeFile(shortText, "Only a few words of text.");
    const short = await runCli(["eval", "--checkpoint", run, "--needle", "--lengths", "1000", "--haystack", shortText, "--output", join(work, "needle-short"), "--threads", "2"], { env });
    assert.equal(short.code, 2);
    assert.match(short.stderr, /--haystack .*short\.txt: \d+ tokens of text, but length 1,000 needs [\d,]+; give a longer text/);
    assert.ok(!existsSync(join(work, "needle-short")));
  });

  it("killed -9 at seeded random points (mid-stage, between stages, during a build) and resumed, ends in the same weights bit for bit", async () => {
    const reference = JSON.parse(await readFile(join(work, "plan", "plan.lock.json"), "utf8"));
    const out = join(work, "killed");
    // The kill points are seeded, so a failure replays.
    const next = mulberry32(20261206);
    let kills = 0;
    for (let attempt = 0; ; attempt++) {
      const args = [binPath, "train", "--plan", join(work, "plan.yaml"), "--out", out, ...(attempt > 0 ? ["--resume"] : [])];
      const child = spawn(process.execPath, args, { env: { ...process.env, CI: "true", ...env }, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
      // Three kills at 1–14 s into an attempt, then it runs to the end.
      const timer = kills < 3 ? setTimeout(() => (child.kill("SIGKILL"), kills++), 1000 + next() * 13000) : undefined;
      const code = await exited;
      clearTimeout(timer);
      if (code === 0) break;
      assert.equal(code, null, `attempt ${attempt} failed by itself: ${stderr}`);
      assert.ok(attempt < 8, "the plan never finished");
    }
    assert.ok(kills >= 2, `only ${kills} kill(s) landed before the plan finished`);
    const lock = JSON.parse(await readFile(join(out, "plan.lock.json"), "utf8"));
    assert.deepEqual(
      lock.stages.map((s: { files: Record<string, string> }) => s.files["model.safetensors"]),
      reference.stages.map((s: { files: Record<string, string> }) => s.files["model.safetensors"]),
    );
  });

  it("refuses a plan whose stages cannot chain, naming the stage and writing nothing", async () => {
    const cases: [string, string, RegExp][] = [
      ["no-theta.yaml", planText({ extendTheta: false }), /plan\/no-theta\.yaml:\d+:\d+: stage 'extend': context 1,024 is beyond the model's max_position_embeddings 256: give a larger RoPE base with --rope-theta/],
      ["other-shape.yaml", planText({ extendModel: "small" }), /stage 'extend': its model small is not stage 'cooldown''s shape \(nLayers 4 vs 2, hidden 256 vs 64/],
      ["no-data.yaml", planText().replace(join(repoRoot, "recipes", "fixtures.yaml"), join(work, "missing-build")), /stage 'cooldown': its data .*missing-build is not a build \(no manifest\.json\); build it first/],
      ["typo.yaml", planText().replace("schedule: wsd", "schedul: wsd"), /typo\.yaml:\d+:\d+: .*unknown key 'schedul' — did you mean 'schedule'\?/],
      ["tokens.yaml", planText().replace("steps: 4", "tokens: 4Q"), /stages\[2\]\.tokens: "4Q" is not a token count/],
      ["tasks.yaml", planText().replace("schedule: wsd", "schedule: wsd\n    eval_tasks: arc_easy"), /stage 'cooldown': eval_tasks needs eval_tasks_every \(steps between runs\)/],
    ];
    await mkdir(join(work, "plan-bad"), { recursive: true });
    await writeFile(join(work, "plan-bad", "tiny-256.yaml"), TINY_256);
    for (const [name, text, want] of cases) {
      await writeFile(join(work, "plan-bad", name), text);
      const out = join(work, `refused-${name}`);
      const r = await runCli(["train", "--plan", join(work, "plan-bad", name), "--out", out], { env });
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      assert.match(r.stderr.replace("plan-bad", "plan"), want, name);
      assert.ok(!existsSync(out), `${name}: ${out} was written`);
    }
  });

  it("--init-from a Hub Llama repo in two shards (F32 and BF16) starts where the same files in a local folder do", async () => {
    // A small Llama written here: the pretrain stage's weights, split in two shards with an index, the second in BF16.
    const checkpoint = join(work, "plan", "pretrain", "checkpoint-0000006");
    const tensors = [...(await readSafetensors(join(checkpoint, "model.safetensors"))).values()];
    const half = Math.ceil(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const local = join(work, "tiny-llama");
    await mkdir(local, { recursive: true });
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      for (const t of part) weightMap[t.name] = name;
      await writeFile(join(local, name), i === 0 ? encodeSafetensors(part) : bf16Safetensors(part));
    }
    await writeFile(join(local, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    await cp(join(checkpoint, "config.json"), join(local, "config.json"));
    await cp(join(checkpoint, "tokenizer.json"), join(local, "tokenizer.json"));
    await cp(local, join(hubRoot(), "models", "test", "tiny-llama"), { recursive: true });

    const data = join(work, "plan", "data", "fixtures");
    const common = ["--data", data, "--context", "256", "--micro-batch", "2", "--steps", "1", "--eval-every", "0", "--threads", "2"];
    const fromHub = await runCli(["train", ...common, "--init-from", "test/tiny-llama", "--out", join(work, "from-hub")], { env });
    assert.equal(fromHub.code, 0, fromHub.stderr);
    const fromFolder = await runCli(["train", ...common, "--init-from", local, "--out", join(work, "from-folder")], { env });
    assert.equal(fromFolder.code, 0, fromFolder.stderr);
    assert.equal((await metrics(join(work, "from-hub")))[0]!.loss, (await metrics(join(work, "from-folder")))[0]!.loss);
    const recorded = JSON.parse(await readFile(join(work, "from-hub", "run_config.json"), "utf8")).init_source;
    assert.match(recorded.source, /^test\/tiny-llama@[0-9a-f]{40}$/);
    assert.deepEqual(Object.keys(recorded.files).sort(), ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json"]);
    const state = JSON.parse(await readFile(join(work, "from-hub", "checkpoint-0000001", "chuxin_state.json"), "utf8"));
    assert.deepEqual(state.init_from, recorded);

    // Refused before the first step, naming both sides.
    const refused = async (label: string, args: string[], want: RegExp) => {
      const r = await runCli(["train", ...common, ...args, "--out", join(work, `refused-${label}`)], { env });
      assert.equal(r.code, 2, `${label}: ${r.stderr}`);
      assert.match(r.stderr, want, label);
      assert.ok(!existsSync(join(work, `refused-${label}`)), `${label}: the run folder was left behind`);
    };
    await refused("shape", ["--init-from", local, "--model", "small"], /its shapes are not the model's \(nLayers 2 there, 4 in --model small; hidden 64 there, 256 in --model small/);
    const otherVocab = join(work, "other-vocab");
    await cp(local, otherVocab, { recursive: true });
    const tok = JSON.parse(await readFile(join(otherVocab, "tokenizer.json"), "utf8"));
    const [a, b] = Object.keys(tok.model.vocab).slice(1000, 1002) as [string, string];
    [tok.model.vocab[a], tok.model.vocab[b]] = [tok.model.vocab[b], tok.model.vocab[a]];
    await writeFile(join(otherVocab, "tokenizer.json"), JSON.stringify(tok));
    await refused("vocab", ["--init-from", otherVocab], /its tokenizer\.json has another vocabulary than the data's/);
    const notFinite = join(work, "not-finite");
    await cp(local, notFinite, { recursive: true });
    shards[0]![0]!.data[5] = NaN;
    await writeFile(join(notFinite, "model-00001-of-00002.safetensors"), encodeSafetensors(shards[0]!));
    await refused("nan", ["--init-from", notFinite], /\[5\] is NaN in .*model-00001-of-00002\.safetensors; the source holds non-finite values/);
    await refused("optimizer", ["--init-from", local, "--init-optimizer"], /--init-optimizer: .* has no optimizer\.safetensors/);
  });
});

/** A safetensors file in BF16 (each F32 cut to its upper 16 bits), as Hub repos ship weights. */
function bf16Safetensors(tensors: { name: string; shape: number[]; data: Float32Array }[]): Buffer {
  const f32 = encodeSafetensors(tensors);
  const headerLength = Number(f32.readBigUInt64LE(0));
  const header = JSON.parse(f32.subarray(8, 8 + headerLength).toString("utf8"));
  let offset = 0;
  const bodies: Buffer[] = [];
  for (const t of tensors) {
    const body = Buffer.alloc(t.data.length * 2);
    const bits = new Uint32Array(Float32Array.from(t.data).buffer);
    for (let i = 0; i < bits.length; i++) body.writeUInt16LE(bits[i]! >>> 16, 2 * i);
    header[t.name] = { dtype: "BF16", shape: t.shape, data_offsets: [offset, offset + body.length] };
    offset += body.length;
    bodies.push(body);
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json), ...bodies]);
}
