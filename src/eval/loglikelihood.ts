/**
 * Log-likelihood of continuations given contexts through the native forward pass, with lm-evaluation-harness's
 * token boundaries (HFLM._encode_pair and _loglikelihood_tokens):
 * - trailing whitespace of the context moves to the continuation; the continuation's tokens are those of
 *   encode(context + continuation) after the first len(encode(context)); an empty context is the BOS token;
 *   no special tokens are added otherwise (the harness's default for causal models);
 * - the model reads (context + continuation)[-(max_len + 1):][:-1] and the continuation's tokens are scored at
 *   the last positions: a long context loses tokens on the left.
 * Requests whose model input is the same (one-token continuations of one context: CMMLU's " A" … " D") are run
 * once and read several times; the rest are sorted by length and batched under a token budget.
 */
import { native, type NativeModel, type RunOptions } from "../native/addon.ts";
import type { TextTokenizer } from "../tokenizer/load.ts";
import { pyStrip } from "../tasks/template.ts";

export interface EncodedRequest {
  context: number[];
  continuation: number[];
}

export function encodePair(tokenizer: Pick<TextTokenizer, "encode">, context: string, continuation: string, prefixId: number): EncodedRequest {
  if (context === "") return { context: [prefixId], continuation: tokenizer.encode(continuation) };
  const stripped = pyStrip(context, undefined, false, true);
  const spaces = context.length - stripped.length;
  if (spaces > 0) {
    continuation = context.slice(stripped.length) + continuation;
    context = stripped;
  }
  const whole = tokenizer.encode(context + continuation);
  const ctx = tokenizer.encode(context);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

export interface ScoreOptions {
  maxLength: number;
  /** Tokens per forward pass (rows × padded length). */
  batchTokens: number;
  run: RunOptions;
  padId: number;
}

export interface Scored {
  /** Sum of log p(continuation token | everything before it). */
  logprob: number;
  /** Whether every continuation token was the model's argmax (the harness's is_greedy). */
  greedy: boolean;
  /** Tokens the model read for this request. */
  tokens: number;
}

function logSoftmaxAt(logits: Float32Array, offset: number, vocab: number, target: number): { lp: number; argmax: number } {
  let mx = -Infinity;
  let argmax = 0;
  for (let v = 0; v < vocab; v++) {
    const x = logits[offset + v]!;
    if (x > mx) (mx = x), (argmax = v);
  }
  let z = 0;
  for (let v = 0; v < vocab; v++) z += Math.exp(logits[offset + v]! - mx);
  return { lp: logits[offset + target]! - mx - Math.log(z), argmax };
}

/** The model's input and the continuation tokens it scores, after the harness's left truncation. */
function inputOf(r: EncodedRequest, maxLength: number): { input: number[]; targets: number[] } {
  if (r.continuation.length === 0) return { input: [], targets: [] };
  const whole = [...r.context, ...r.continuation].slice(-(maxLength + 1));
  return { input: whole.slice(0, -1), targets: r.continuation.slice(-Math.min(r.continuation.length, whole.length - 1)) };
}

/**
 * Scores every request; onBatch(done, total) after each forward pass. Logits are read at the continuation's
 * positions of each padded row (right padding: a causal model's earlier positions do not see it).
 */
export async function scoreRequests(
  model: NativeModel,
  vocab: number,
  requests: EncodedRequest[],
  o: ScoreOptions,
  onBatch?: (done: number, total: number) => void,
): Promise<Scored[]> {
  const out: Scored[] = requests.map(() => ({ logprob: 0, greedy: true, tokens: 0 }));
  // One model input per distinct token sequence; each request reads its targets at that input's last positions.
  const inputs = new Map<string, { key: string; input: number[]; readers: { request: number; targets: number[] }[] }>();
  requests.forEach((r, i) => {
    const { input, targets } = inputOf(r, o.maxLength);
    if (targets.length === 0) return;
    const key = input.join(",");
    let entry = inputs.get(key);
    if (!entry) inputs.set(key, (entry = { key, input, readers: [] }));
    entry.readers.push({ request: i, targets });
    out[i]!.tokens = input.length;
  });
  const work = [...inputs.values()].sort((a, b) => b.input.length - a.input.length || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  let done = 0;
  for (let start = 0; start < work.length; ) {
    const T = work[start]!.input.length;
    const B = Math.max(1, Math.min(work.length - start, Math.floor(o.batchTokens / T)));
    const batch = work.slice(start, start + B);
    start += B;
    const tokens = new Int32Array(B * T).fill(o.padId);
    const positions: number[] = [];
    const reads: { request: number; target: number; slot: number }[] = [];
    batch.forEach((w, b) => {
      tokens.set(w.input, b * T);
      const longest = Math.max(...w.readers.map((r) => r.targets.length));
      const first = w.input.length - longest;
      const slotOf = new Map<number, number>();
      for (let t = first; t < w.input.length; t++) {
        slotOf.set(t, positions.length);
        positions.push(b * T + t);
      }
      for (const r of w.readers) {
        r.targets.forEach((target, k) => reads.push({ request: r.request, target, slot: slotOf.get(w.input.length - r.targets.length + k)! }));
      }
    });
    const logits = await native("scoring", () => model.logitsAt(tokens, B, T, o.run, Int32Array.from(positions)));
    for (const r of reads) {
      const { lp, argmax } = logSoftmaxAt(logits, r.slot * vocab, vocab, r.target);
      out[r.request]!.logprob += lp;
      if (argmax !== r.target) out[r.request]!.greedy = false;
    }
    done += batch.length;
    onBatch?.(done, work.length);
  }
  return out;
}
