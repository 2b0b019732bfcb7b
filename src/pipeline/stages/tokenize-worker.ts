import { parentPort, workerData } from "node:worker_threads";
import { tokenizerFromText } from "../../tokenizer/load.ts";

export interface TokenizeRequest {
  chunk: number;
  texts: string[];
}

export interface TokenizeResult {
  chunk: number;
  lengths: Uint32Array;
  ids: Uint32Array;
}

const tokenizer = tokenizerFromText(workerData.tokenizerJson as string, workerData.tokenizerPath as string);

parentPort!.on("message", (request: TokenizeRequest) => {
  const pieces = request.texts.map((t) => tokenizer.encode(t));
  const lengths = Uint32Array.from(pieces, (p) => p.length);
  const ids = new Uint32Array(lengths.reduce((a, b) => a + b, 0));
  let at = 0;
  for (const p of pieces) {
    ids.set(p, at);
    at += p.length;
  }
  const result: TokenizeResult = { chunk: request.chunk, lengths, ids };
  parentPort!.postMessage(result, [lengths.buffer, ids.buffer]);
});
parentPort!.postMessage({ ready: true });
