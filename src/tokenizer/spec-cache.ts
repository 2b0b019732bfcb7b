/**
 * The native tokenizer's spec, cached on disk by the tokenizer.json's sha256: building it from the JSON (100K
 * tokens and merges, Unicode tables) is most of a short `tokenize`'s time, and its result depends only on that file,
 * this module's format and the Unicode version. The cache lives in $XDG_CACHE_HOME/chuxin-data (~/.cache); a file
 * that fails its digest, or any error reading or writing, means the spec is built from the JSON as before.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../util/atomic.ts";
import type { TokenizerInfo } from "./json.ts";
import type { NativeTokenizerSpec, StepSpec } from "./spec.ts";

/** Bump when nativeTokenizerSpec's output or this encoding changes: older files are then never read. */
const FORMAT = 1;

export function specCachePath(tokenizerSha256: string, env: NodeJS.ProcessEnv = process.env): string {
  const root = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(root, "chuxin-data", "tokenizers", `${tokenizerSha256}.spec${FORMAT}-unicode${process.versions.unicode ?? "x"}.bin`);
}

interface Header {
  info: TokenizerInfo;
  added: { id: number; content: string; special: boolean; bytes: number }[];
  steps: ({ kind: StepSpec["kind"]; chars?: number })[];
  /** blob indexes */
  vocabBytes: number;
  vocabOffsets: number;
  merges: number;
  whitespace: number;
  numeric: number;
  /** each blob's byte offset and length after the header, and the sha256 of all of them */
  blobs: [number, number][];
  sha256: string;
}

export function encodeSpec(info: TokenizerInfo, spec: NativeTokenizerSpec): Buffer {
  const blobs: Uint8Array[] = [];
  const add = (a: Uint8Array | Uint32Array) => blobs.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)) - 1;
  const header: Omit<Header, "blobs" | "sha256"> = {
    info,
    added: spec.added.map((t) => ({ id: t.id, content: t.content, special: t.special, bytes: add(t.bytes) })),
    steps: spec.steps.map((s) => ("chars" in s ? { kind: s.kind, chars: add(s.chars) } : { kind: s.kind })),
    vocabBytes: add(spec.vocabBytes),
    vocabOffsets: add(spec.vocabOffsets),
    merges: add(spec.merges),
    whitespace: add(spec.whitespace),
    numeric: add(spec.numeric),
  };
  // Each blob starts on a 4-byte boundary, so the word arrays can be copied out as they are.
  const placed: [number, number][] = [];
  let at = 0;
  for (const b of blobs) {
    placed.push([at, b.byteLength]);
    at += Math.ceil(b.byteLength / 4) * 4;
  }
  const body = Buffer.alloc(at);
  blobs.forEach((b, i) => body.set(b, placed[i]![0]));
  const head = Buffer.from(JSON.stringify({ ...header, blobs: placed, sha256: createHash("sha256").update(body).digest("hex") }));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(head.length);
  return Buffer.concat([length, head, body]);
}

export function decodeSpec(bytes: Buffer): { info: TokenizerInfo; spec: NativeTokenizerSpec } | undefined {
  try {
    const headLength = bytes.readUInt32LE(0);
    const header = JSON.parse(bytes.subarray(4, 4 + headLength).toString("utf8")) as Header;
    const body = bytes.subarray(4 + headLength);
    if (createHash("sha256").update(body).digest("hex") !== header.sha256) return undefined;
    const blob = (i: number) => {
      const [offset, length] = header.blobs[i]!;
      return Uint8Array.prototype.slice.call(body, offset, offset + length) as Uint8Array;
    };
    const words = (i: number) => new Uint32Array(blob(i).buffer);
    const spec: NativeTokenizerSpec = {
      vocabBytes: Buffer.from(blob(header.vocabBytes)),
      vocabOffsets: words(header.vocabOffsets),
      merges: words(header.merges),
      added: header.added.map((t) => ({ id: t.id, content: t.content, special: t.special, bytes: Buffer.from(blob(t.bytes)) })),
      steps: header.steps.map((s) => (s.chars !== undefined ? { kind: s.kind as "isolate_each", chars: words(s.chars) } : { kind: s.kind as "digits" })),
      whitespace: words(header.whitespace),
      numeric: words(header.numeric),
    };
    return { info: header.info, spec };
  } catch {
    return undefined;
  }
}

/** The cached spec of the tokenizer.json with this sha256, if there is an intact one. */
export function readCachedSpec(tokenizerSha256: string): { info: TokenizerInfo; spec: NativeTokenizerSpec } | undefined {
  try {
    return decodeSpec(readFileSync(specCachePath(tokenizerSha256)));
  } catch {
    return undefined;
  }
}

/** Writes the cache, best effort: a read-only or full home folder only costs the next start its time. */
export async function writeCachedSpec(info: TokenizerInfo, spec: NativeTokenizerSpec): Promise<void> {
  try {
    const path = specCachePath(info.sha256);
    mkdirSync(dirname(path), { recursive: true });
    await writeFileAtomic(path, encodeSpec(info, spec));
  } catch {
    /* the spec is built again next time */
  }
}
