/**
 * Checks that a checkpoint computes the same per-position losses as Hugging Face Llama semantics
 * (bench/hf_parity.py, plain PyTorch fp32), on windows of a build with several documents each.
 *   node --import tsx bench/hf-parity.ts --checkpoint RUN --data OUT [--windows 2] [--context 256]
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { TokenData } from "../src/train/data.ts";
import { openCheckpoint } from "../src/eval/checkpoint.ts";

const { values } = parseArgs({ options: { checkpoint: { type: "string" }, data: { type: "string" }, windows: { type: "string", default: "2" }, context: { type: "string", default: "256" } } });
const ckpt = await openCheckpoint(values.checkpoint!, "cpu", 2);
const data = await TokenData.open(values.data!, { seed: 0, evalWindows: 0, modelContext: ckpt.config.maxSeq, modelVocab: ckpt.config.vocab, context: Number(values.context) });
const rows: number[][] = [];
for (let w = 0; w < Number(values.windows); w++) rows.push(Array.from(await data.read([w], ckpt.config.vocab)));
const T = rows[0]!.length;
const ours = await ckpt.model.forwardLosses(Int32Array.from(rows.flat()), rows.length, T, { precision: 1, docMask: 1, resetPositions: 1, maskEosLoss: 0, eosId: ckpt.eosId, recompute: 0 });
const input = join(tmpdir(), `hf-parity-${process.pid}.json`);
writeFileSync(input, JSON.stringify({ tokens: rows, eos: ckpt.eosId }));
const script = join(dirname(fileURLToPath(import.meta.url)), "hf_parity.py");
const r = spawnSync("/usr/bin/python3", [script, ckpt.dir, input], { encoding: "utf8", maxBuffer: 1 << 28 });
if (r.status !== 0) throw new Error(r.stderr);
const ref = JSON.parse(r.stdout) as number[][];
let worst = 0;
rows.forEach((_, b) => ref[b]!.forEach((l, t) => (worst = Math.max(worst, Math.abs(l - ours[b * T + t]!)))));
const docs = rows.map((row) => row.filter((x) => x === ckpt.eosId).length + 1);
console.log(`${ckpt.dir}: ${rows.length} windows of ${T} tokens (${docs.join(", ")} documents); max |loss difference| vs HF-semantics PyTorch fp32: ${worst.toExponential(2)}`);
ckpt.model.dispose();
await data.close();
