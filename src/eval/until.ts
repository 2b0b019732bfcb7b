/**
 * Greedy generation until a stop sequence, as the harness's generate_until: the context is left-truncated to
 * max_length - max_gen_toks tokens, at most max_gen_toks tokens are generated, generation ends at EOS or once
 * the text holds a stop sequence, and the text is cut before the first stop sequence.
 */
import { native, type NativeModel, type RunOptions } from "../native/addon.ts";
import type { TextTokenizer } from "../tokenizer/load.ts";
import { argmax } from "./metrics.ts";

export interface UntilOptions {
  until: string[];
  maxGen: number;
  maxLength: number;
  eosId: number;
  vocab: number;
  run: RunOptions;
}

export function cutAtStops(text: string, until: readonly string[]): string {
  let out = text;
  for (const stop of until) if (stop.length > 0) out = out.split(stop)[0]!;
  return out;
}

export async function generateUntil(model: NativeModel, tokenizer: Pick<TextTokenizer, "encode" | "decode">, context: string, o: UntilOptions): Promise<{ text: string; tokens: number; contextTokens: number }> {
  // A model shorter than max_gen_toks keeps half its window for the context.
  const maxGen = Math.min(o.maxGen, Math.floor(o.maxLength / 2));
  const ids = tokenizer.encode(context).slice(-(o.maxLength - maxGen));
  const contextTokens = ids.length;
  const generated: number[] = [];
  const stops = o.until.filter((s) => s.length > 0);
  // The key/value cache: the context once, then one token per step.
  model.decodeReset(ids.length + maxGen);
  let step = Int32Array.from(ids);
  while (generated.length < maxGen) {
    const input = step;
    const logits = await native("generation", () => model.decodeStep(input, o.run));
    const next = argmax(logits.subarray(0, o.vocab));
    if (next === o.eosId) break;
    generated.push(next);
    step = Int32Array.of(next);
    if (stops.length && stops.some((s) => tokenizer.decode(generated).includes(s))) break;
  }
  return { text: cutAtStops(tokenizer.decode(generated), stops), tokens: generated.length, contextTokens };
}
