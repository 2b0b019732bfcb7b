/** Sizes as people write them: "4GB", "512MiB", "1.5G", "2048" (bytes), or "60%" of this machine's memory. */
import { totalmem } from "node:os";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1e3, kb: 1e3, kib: 2 ** 10, m: 1e6, mb: 1e6, mib: 2 ** 20, g: 1e9, gb: 1e9, gib: 2 ** 30, t: 1e12, tb: 1e12, tib: 2 ** 40 };

/** Bytes, or undefined when the text is not a size. */
export function parseSize(text: string, total = totalmem()): number | undefined {
  const m = text.trim().match(/^(\d+(?:\.\d+)?)\s*([a-zA-Z]*|%)$/);
  if (!m) return undefined;
  const value = Number(m[1]);
  if (m[2] === "%") return value > 0 && value <= 100 ? Math.floor((total * value) / 100) : undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? undefined : Math.floor(value * unit);
}

export function formatSize(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  if (bytes >= 2 ** 20) return `${Math.round(bytes / 2 ** 20)} MiB`;
  return bytes >= 2 ** 10 ? `${Math.round(bytes / 2 ** 10)} KiB` : `${bytes} B`;
}
