/** Numeric flags checked before any work: a usage error naming the flag, the value given and its bounds. */
import { UsageError } from "../util/errors.ts";

const shown = (value: unknown) => (typeof value === "number" && Number.isNaN(value) ? "(not a number)" : String(value));
const n = (x: number) => x.toLocaleString("en-US");

/** A whole number within [min, max]; undefined stays undefined (the flag was not given). */
export function wholeNumber(flag: string, value: unknown, min: number, max: number, why: string): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (Number.isInteger(v) && v >= min && v <= max) return v;
  throw new UsageError(`--${flag} ${shown(value)}: expected a whole number from ${n(min)} to ${n(max)} (${why})`);
}

/** A number within [min, max] (or (min, max] when `openMin`). */
export function numberIn(flag: string, value: unknown, min: number, max: number, why: string, openMin = false): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (Number.isFinite(v) && (openMin ? v > min : v >= min) && v <= max) return v;
  throw new UsageError(`--${flag} ${shown(value)}: expected a number ${openMin ? "above" : "from"} ${min} ${openMin ? "up " : ""}to ${max} (${why})`);
}

/** CPU threads: beyond this no machine has cores for them. */
export const MAX_THREADS = 4096;
