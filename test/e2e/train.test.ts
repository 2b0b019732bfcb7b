import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { readNpyInfo, readSequences } from "../../src/shards/npy.ts";
import { safetensorsHeader } from "../../src/train/safetensors.ts";
import { runCli } from "../helpers/cli.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";
import { binPath } from "../helpers/paths.ts";

const common = ["--model", "tiny", "--context", "256", "--micro-batch", "4", "--threads", "2", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-steps", "20"];

function metrics(text: string): Record<string, number>[] {
  return text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

async function unigramEntropy(out: string): Promise<number> {
  const m = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
  const counts = new Map<number, number>();
  let total = 0;
  for (const s of m.shards) {
    const path = join(out, s.path);
    const ids = await readSequences(path, await readNpyInfo(path), 0, s.sequences);
    for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
    total += ids.length;
  }
  let h = 0;
  for (const c of counts.values()) h -= (c / total) * Math.log(c / total);
  return h;
}

describe("chuxin-data train / eval / generate on the sample build", () => {
  const fixture = useSampleBuild("chuxin-train-");
  // Read once `before` has built the data.
  let work: string, env: Record<string, string>, data: string;
  before(() => ({ work, env, data } = fixture));

  it("takes a tiny model's loss well below the data's unigram entropy, and the checkpoint generates and evaluates", async () => {
    const run = join(work, "run");
    const r = await runCli(["train", "--data", data, "--out", run, "--steps", "200", "--save-every", "100", "--eval-every", "100", "--eval-sequences", "16", ...common], { env });
    assert.equal(r.code, 0, r.stderr);
    const lines = metrics(await readFile(join(run, "metrics.jsonl"), "utf8"));
    const evals = lines.filter((l) => l.eval_loss !== undefined);
    const entropy = await unigramEntropy(data);
    const final = evals[evals.length - 1]!.eval_loss!;
    assert.ok(final < entropy - 0.5, `eval loss ${final} vs unigram entropy ${entropy}`);
    assert.equal(lines.filter((l) => l.loss !== undefined).length, 200);
    assert.ok(existsSync(join(run, "loss.svg")));

    const ckpt = join(run, "checkpoint-0000200");
    const header = await safetensorsHeader(join(ckpt, "model.safetensors"));
    for (const name of ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight"]) {
      assert.ok(name in header, name);
    }
    assert.deepEqual((header["model.norm.weight"] as any).shape, [64]);
    const config = JSON.parse(await readFile(join(ckpt, "config.json"), "utf8"));
    assert.deepEqual(config.architectures, ["LlamaForCausalLM"]);
    assert.equal(config.tie_word_embeddings, false);
    const runConfig = JSON.parse(await readFile(join(run, "run_config.json"), "utf8"));
    assert.equal(runConfig.doc_mask, true);
    assert.equal(runConfig.global_batch_tokens, 1024);

    const g = await runCli(["generate", "--checkpoint", run, "--prompt", "Natalia sold clips to", "--max-tokens", "24", "--json"], { env });
    assert.equal(g.code, 0, g.stderr);
    const out = JSON.parse(g.stdout);
    assert.ok(out.ids.length > 0 && out.completion.trim().length > 0, g.stdout);
    // As text: the prompt, the completion, and a final newline (a shell prompt starts on a line of its own).
    const text = await runCli(["generate", "--checkpoint", run, "--prompt", "Natalia sold clips to", "--max-tokens", "24"], { env });
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, `Natalia sold clips to${out.completion}\n`);

    const e = await runCli(["eval", "--checkpoint", run, "--data", data, "--sequences", "0..3", "--json"], { env });
    assert.equal(e.code, 0, e.stderr);
    const ev = JSON.parse(e.stdout);
    assert.equal(ev.sequences.length, 4);
    assert.ok(ev.mean_loss < entropy, `eval ${ev.mean_loss}`);
    assert.ok(Math.abs(ev.perplexity - Math.exp(ev.mean_loss)) < 1e-6 * ev.perplexity);
  });

  it("resumes after being killed past a checkpoint with bit-identical losses, also when it resumes recomputing the blocks", async () => {
    const steps = ["--steps", "24", "--save-every", "12", "--eval-every", "0"];
    const straight = join(work, "straight");
    const a = await runCli(["train", "--data", data, "--out", straight, ...steps, ...common], { env });
    assert.equal(a.code, 0, a.stderr);
    // The tiny model's activations per token, by hand from the activation plan (fp32 on the CPU): (hidden 64 ×
    // (layers + 1) + per block 7·64 + 2 + 4 heads + 3·172, + 8·64 + 2 + 3·172 + 4 token ints) × 4 bytes; one block's
    // worth instead of two when recomputed.
    assert.match(
      a.stderr,
      /memory on cpu: [\d.]+ GiB weights, gradients and AdamW state \+ [\d.]+ GiB activations at micro-batch 4 × 256; activations take 12,664 B\/token \(8,784 with --recompute\), so [\d.]+ GiB \(host available memory \+ this run's activations\) holds a context of up to [\d,]+ tokens at micro-batch 4 \([\d,]+ with --recompute\)\n/,
    );

    const killed = join(work, "killed");
    const child = spawn(process.execPath, [binPath, "train", "--data", data, "--out", killed, ...steps, ...common, "--json"], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    await new Promise<void>((resolve) => {
      let seen = "";
      child.stdout.on("data", (d: Buffer) => {
        seen += d.toString();
        if (seen.includes('"type":"step","step":14')) child.kill("SIGKILL");
      });
      child.on("close", () => resolve());
    });
    assert.deepEqual((await readdir(killed)).filter((n) => n.startsWith("checkpoint-")), ["checkpoint-0000012"]);
    // Recomputation changes memory, not arithmetic: the resumed steps must still match bit for bit.
    const b = await runCli(["train", "--data", data, "--out", killed, ...steps, ...common, "--resume", "--recompute"], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /GiB activations at micro-batch 4 × 256 \(recomputed\)/);
    const pick = (l: Record<string, number>) => ({ step: l.step, loss: l.loss, grad_norm: l.grad_norm, lr: l.lr });
    const x = metrics(await readFile(join(straight, "metrics.jsonl"), "utf8")).map(pick);
    const y = metrics(await readFile(join(killed, "metrics.jsonl"), "utf8")).map(pick);
    assert.equal(y.length, 24);
    assert.deepEqual(y, x);
  });

  it("stops on a non-finite loss, keeping the last good checkpoint", async () => {
    const run = join(work, "nan");
    // --lr and --warmup-steps are given twice (in `common` and here): the last value wins. The largest --lr allowed
    // (10), held constant, unclipped and without AdamW's second moment, blows up within a few steps.
    const r = await runCli(
      ["train", "--data", data, "--out", run, "--steps", "20", "--save-every", "1", "--eval-every", "0", ...common, "--lr", "10", "--schedule", "constant", "--warmup-steps", "0", "--clip", "0", "--beta2", "0"],
      { env },
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /step \d+: loss is (NaN|Infinity|-Infinity), gradient norm .*training stopped before applying it\. The last good checkpoint is .*checkpoint-\d+/);
  });

  it("refuses data the model cannot take before any step runs (exit 2)", async () => {
    const small = join(work, "small.json");
    await writeFile(small, JSON.stringify({ nLayers: 1, hidden: 16, nHeads: 2, ffn: 32, vocab: 1000, maxSeq: 128 }));
    const v = await runCli(["train", "--data", data, "--out", join(work, "v"), "--model", small, "--steps", "1"], { env });
    assert.equal(v.code, 2);
    assert.match(v.stderr, /the data's tokenizer has 100015 token ids but the model's vocabulary is 1000/);
    const c = await runCli(["train", "--data", data, "--out", join(work, "c"), "--model", "tiny", "--context", "8192", "--steps", "1"], { env });
    assert.equal(c.code, 2);
    assert.match(c.stderr, /--context 8192: must be between 2 and the data's sequence_length 4096/);
    const once = ["train", "--data", data, "--out", join(work, "once"), "--steps", "1", "--eval-every", "0", ...common];
    assert.equal((await runCli(once, { env })).code, 0);
    const again = await runCli(once, { env });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already holds checkpoints; pass --resume/);
  });
});
