/**
 * Greedy generation with the key/value cache (cx_decode_*) against PyTorch with a cache (bench/generate_torch.py), on
 * the same checkpoint, prompt and thread count: tokens/s of the decode steps, the prefill time, and whether both
 * chose the same tokens (fp32). The full-recompute path (a forward over the whole sequence per token, what
 * `generate` did before the cache) is timed too, on fewer tokens.
 *   node --import tsx bench/generate.ts --checkpoint RUN [--prompt-tokens 256] [--new-tokens 128] [--threads 2]
 * Needs Debian's python3-torch (run with /usr/bin/python3).
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { openCheckpoint } from "../src/eval/checkpoint.ts";
import { argmax } from "../src/eval/metrics.ts";

const { values } = parseArgs({ options: { checkpoint: { type: "string" }, "prompt-tokens": { type: "string", default: "256" }, "new-tokens": { type: "string", default: "128" }, threads: { type: "string", default: "2" } } });
const threads = Number(values.threads);
const P = Number(values["prompt-tokens"]);
const N = Number(values["new-tokens"]);
const ckpt = await openCheckpoint(values.checkpoint!, "cpu", threads);
const run = { precision: 1, docMask: 0, resetPositions: 0, maskEosLoss: 0, eosId: -1, recompute: 0 } as const;
// A fixed prompt of ordinary token ids (no EOS), the same for both sides.
const prompt = Array.from({ length: P }, (_, i) => 1000 + ((i * 7919) % 50000));
const V = ckpt.config.vocab;

ckpt.model.decodeReset(P + N + 1);
let t = performance.now();
let logits = await ckpt.model.decodeStep(Int32Array.from(prompt), run);
const prefill = (performance.now() - t) / 1000;
const ours: number[] = [];
t = performance.now();
for (let i = 0; i < N; i++) {
  const next = argmax(logits.subarray(0, V));
  ours.push(next);
  logits = await ckpt.model.decodeStep(Int32Array.of(next), run);
}
const decode = (performance.now() - t) / 1000;

const R = Math.min(N, 16);
const ids = [...prompt];
t = performance.now();
for (let i = 0; i < R; i++) {
  const l = await ckpt.model.lastLogits(Int32Array.from(ids), 1, ids.length, run);
  ids.push(argmax(l.subarray(0, V)));
}
const recompute = (performance.now() - t) / 1000;

const script = join(dirname(fileURLToPath(import.meta.url)), "generate_torch.py");
const r = spawnSync("/usr/bin/python3", [script, ckpt.dir, JSON.stringify(prompt), String(N), String(threads)], { encoding: "utf8", maxBuffer: 1 << 26 });
if (r.status !== 0) throw new Error(r.stderr);
const torch = JSON.parse(r.stdout) as { ids: number[]; prefill_s: number; decode_s: number };
const same = torch.ids.findIndex((id, i) => id !== ours[i]);
const mc = ckpt.config;
console.log(`checkpoint ${ckpt.dir}: ${mc.nLayers} layers, hidden ${mc.hidden}, vocab ${mc.vocab}; prompt ${P} tokens, ${N} new tokens, greedy, fp32, ${threads} thread(s)`);
console.log(`ours (KV cache)      prefill ${prefill.toFixed(3)} s, decode ${(N / decode).toFixed(1)} tokens/s`);
console.log(`ours (recompute all) ${(R / recompute).toFixed(1)} tokens/s over the first ${R} tokens (the path before the cache)`);
console.log(`torch (KV cache)     prefill ${torch.prefill_s.toFixed(3)} s, decode ${(N / torch.decode_s).toFixed(1)} tokens/s`);
console.log(`decode ratio ours/torch ${(torch.decode_s / decode).toFixed(2)}x; greedy tokens ${same === -1 ? `identical for all ${N}` : `first differ at token ${same}`}; ours vs recompute ${ids.slice(P).every((id, i) => id === ours[i]) ? "identical" : "differ"}`);
ckpt.model.dispose();
