/**
 * What a run's context costs in memory and how far it could go: activation bytes per token with and without
 * --recompute (exactly linear in micro-batch × context: every activation buffer is sized by the token count, and
 * attention, the LM head's logits and the loss work in fixed-size chunks), and the largest context the memory the
 * device has left would hold at this micro-batch.
 */
import { freemem } from "node:os";
import type { NativeModel } from "../native/addon.ts";

export interface ContextFit {
  activation_bytes_per_token: number;
  activation_bytes_per_token_recompute: number;
  /** memory activations could have: free now plus what this run's activations hold */
  available_bytes: number;
  /** where `available_bytes` comes from */
  available_source: "GPU free memory" | "host available memory";
  /** longest context at this micro-batch, in whole multiples of CONTEXT_GRANULE tokens (0: not even one) */
  largest_context: number;
  largest_context_recompute: number;
}

/** Contexts are stated in multiples of this (the attention kernels' block sizes divide it). */
export const CONTEXT_GRANULE = 1024;

/** The longest context (a multiple of CONTEXT_GRANULE) whose activations at `microBatch` rows fit `available` bytes. */
export function largestContext(bytesPerToken: number, available: number, microBatch: number): number {
  if (!(bytesPerToken > 0) || !(available > 0)) return 0;
  const tokens = Math.floor(available / (bytesPerToken * microBatch));
  return Math.floor(tokens / CONTEXT_GRANULE) * CONTEXT_GRANULE;
}

/**
 * Measures a model after its first step (`tokens`: the micro-batch's tokens on this rank). On a GPU the free
 * memory is the device's; on the CPU it is the host's available memory, shared by the `ranksOnHost` ranks of this
 * machine. Under context parallelism each rank holds 1/ringSize of every sequence, so the ring holds that many
 * times the context one rank would.
 */
export function contextFit(
  model: Pick<NativeModel, "activationBytes" | "deviceMemory" | "memory">,
  o: { tokens: number; precision: 0 | 1; microBatch: number; ranksOnHost: number; ringSize?: number },
  hostAvailable: () => number = freemem,
): ContextFit {
  const perToken = model.activationBytes(o.tokens, o.precision, 0) / o.tokens;
  const perTokenRecompute = model.activationBytes(o.tokens, o.precision, 1) / o.tokens;
  const device = model.deviceMemory();
  const held = model.memory().activations;
  const free = device ? device.free : hostAvailable() / Math.max(1, o.ranksOnHost);
  const available = free + held;
  return {
    activation_bytes_per_token: perToken,
    activation_bytes_per_token_recompute: perTokenRecompute,
    available_bytes: available,
    available_source: device ? "GPU free memory" : "host available memory",
    largest_context: largestContext(perToken, available, o.microBatch) * (o.ringSize ?? 1),
    largest_context_recompute: largestContext(perTokenRecompute, available, o.microBatch) * (o.ringSize ?? 1),
  };
}
