/** Suggestions for a misspelt name: a flag, a column, a file. */

/** Edit distance with a swap of two neighbours as one edit (--stpes is one slip from --steps). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate nearest to `name`: the only one it is a prefix of, else the closest within `slack` edits (default: a
 * third of its length, at least 1, compared case-insensitively); undefined when none is near.
 */
export function closest(name: string, candidates: Iterable<string>, slack = Math.max(1, Math.floor(name.length / 3))): string | undefined {
  const all = [...candidates];
  const prefixed = all.filter((c) => c.startsWith(name) && c !== name);
  if (prefixed.length === 1) return prefixed[0];
  let best: { c: string; d: number } | undefined;
  for (const c of all) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d <= slack && (!best || d < best.d)) best = { c, d };
  }
  return best?.c;
}
