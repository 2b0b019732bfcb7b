import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
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
  const digest = createHash("sha256").update(parts.map(String).join("\u0000")).digest();
  return digest.readBigUInt64BE(0);
}
