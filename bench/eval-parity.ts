/**
 * The benchmarks' log-likelihoods against an independent PyTorch implementation of Hugging Face Llama semantics
 * (bench/hf_parity.py, fp32), and the scoring throughput of both on the same requests in the same run.
 * Every shipped task with a stand-in under ../shared/hub is run through the loopback Hub on a checkpoint; each
 * request's tokens go to PyTorch, which scores them batched as lm-evaluation-harness does; the script reports the
 * largest |log-likelihood difference| per task, acc and acc_norm recomputed from PyTorch's numbers beside ours,
 * and requests/s and tokens/s of each side.
 *   node --import tsx bench/eval-parity.ts --checkpoint RUN [--tasks a,b] [--limit 20] [--threads 2] [--batch-tokens 4096]
 * Needs Debian's python3-torch (run with /usr/bin/python3).
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runTask, scoringRunOptions, type ModelUnderTest } from "../src/eval/benchmarks.ts";
import { openCheckpoint } from "../src/eval/checkpoint.ts";
import { checkpointTokenizer } from "../src/eval/generate.ts";
import { mcRowMetrics } from "../src/eval/metrics.ts";
import { loadTasks } from "../src/tasks/load.ts";
import { HubClient } from "../src/hub/client.ts";
import { hubEnv } from "../src/hub/env.ts";
import { HubServer } from "../test/helpers/hub-server.ts";
import { sharedHub } from "../test/helpers/paths.ts";

const { values } = parseArgs({
  options: {
    checkpoint: { type: "string" },
    tasks: { type: "string", default: "arc_easy,arc_challenge,openbookqa,piqa,boolq,cmmlu,ceval" },
    limit: { type: "string", default: "20" },
    threads: { type: "string", default: "2" },
    "batch-tokens": { type: "string", default: "4096" },
  },
});
const threads = Number(values.threads);
const work = await mkdtemp(join(tmpdir(), "chuxin-eval-parity-"));
const server = await new HubServer({ root: sharedHub }).start();
try {
  const ckpt = await openCheckpoint(values.checkpoint!, "cpu", threads);
  const m: ModelUnderTest = {
    model: ckpt.model,
    tokenizer: await checkpointTokenizer(ckpt),
    vocab: ckpt.config.vocab,
    maxLength: ckpt.config.maxSeq,
    eosId: ckpt.eosId,
    bosId: ckpt.bosId,
    run: scoringRunOptions(1, ckpt.eosId),
  };
  const client = new HubClient({ ...hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") }) });
  const script = join(dirname(fileURLToPath(import.meta.url)), "hf_parity.py");
  console.log(`checkpoint ${ckpt.dir} (${ckpt.config.nLayers} layers, hidden ${ckpt.config.hidden}), ${threads} thread(s), --limit ${values.limit} rows per task or subject`);
  for (const task of await loadTasks(values.tasks!)) {
    const started = performance.now();
    const { result, samples } = await runTask(client, m, task, { limit: Number(values.limit), batchTokens: Number(values["batch-tokens"]), allowNetwork: false, python: "python3", sampleIds: true }, () => {});
    const oursSeconds = (performance.now() - started) / 1000;
    // Each request as the model reads it: (context + continuation)[-(max+1):][:-1], targets its last tokens.
    const requests = samples.flatMap((s) =>
      (s.ids as { context: number[]; continuation: number[] }[]).map((r) => {
        const whole = [...r.context, ...r.continuation].slice(-(m.maxLength + 1));
        return { input: whole.slice(0, -1), targets: r.continuation.slice(-(whole.length - 1)) };
      }),
    );
    const input = join(work, `${result.task}.json`);
    await writeFile(input, JSON.stringify({ requests, batch_tokens: Number(values["batch-tokens"]) }));
    const r = spawnSync("/usr/bin/python3", [script, ckpt.dir, input, String(threads)], { encoding: "utf8", maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(r.stderr);
    const ref = JSON.parse(r.stdout) as { logprobs: number[]; seconds: number };
    let k = 0;
    let worst = 0;
    const torchAcc = { acc: 0, acc_norm: 0 };
    const oursAcc = { acc: 0, acc_norm: 0 };
    for (const s of samples) {
      const ours = s.logprobs as number[];
      const theirs = ours.map(() => ref.logprobs[k++]!);
      ours.forEach((lp, i) => (worst = Math.max(worst, Math.abs(lp - theirs[i]!))));
      const a = mcRowMetrics(theirs, s.choices as string[], s.gold as number);
      const b = mcRowMetrics(ours, s.choices as string[], s.gold as number);
      torchAcc.acc += a.acc;
      torchAcc.acc_norm += a.acc_norm;
      oursAcc.acc += b.acc;
      oursAcc.acc_norm += b.acc_norm;
    }
    const tokens = requests.reduce((a, q) => a + q.input.length, 0);
    const n = samples.length;
    console.log(
      `${result.task.padEnd(14)} rows ${String(n).padStart(4)}  requests ${String(requests.length).padStart(5)}  max |Δ loglik| ${worst.toExponential(2)}  ` +
        `acc ours ${(oursAcc.acc / n).toFixed(4)} torch ${(torchAcc.acc / n).toFixed(4)}  acc_norm ours ${(oursAcc.acc_norm / n).toFixed(4)} torch ${(torchAcc.acc_norm / n).toFixed(4)}  ` +
        `ours ${(requests.length / oursSeconds).toFixed(1)} req/s (incl. download+tokenize ${oursSeconds.toFixed(2)} s, ${result.requests} requests, ${result.tokens} tokens read)  ` +
        `torch ${(requests.length / ref.seconds).toFixed(1)} req/s ${(tokens / ref.seconds).toFixed(0)} tok/s (${ref.seconds.toFixed(2)} s scoring only)`,
    );
  }
  ckpt.model.dispose();
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
