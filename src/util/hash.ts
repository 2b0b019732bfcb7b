import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** JSON with every object's keys sorted, so a digest of it does not depend on the order a parser kept. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * A keyed 64-bit hash used for seeded orderings: the key is (recipe seed, source, document, pass),
 * so orderings never depend on file order, worker count or wall time.
 */
export function keyedHash64(...parts: (string | number | bigint)[]): bigint {
  return keyedDigest(parts).readBigUInt64BE(0);
}

/** keyedHash64 as its high and low 32-bit words (no BigInt: the sampler keys millions of documents this way). */
export function keyedHash64Words(...parts: (string | number | bigint)[]): [hi: number, lo: number] {
  const digest = keyedDigest(parts);
  return [digest.readUInt32BE(0), digest.readUInt32BE(4)];
}

function keyedDigest(parts: (string | number | bigint)[]): Buffer {
  return createHash("sha256").update(parts.map(String).join("\u0000")).digest();
}
