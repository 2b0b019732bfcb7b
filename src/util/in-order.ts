/**
 * Runs `produce(k)` for k = 0 … n − 1 and hands each result to `consume` in order, with the next `ahead` (at least
 * one) already started while one is consumed: a stage's reads and native calls on the next batches overlap its
 * JavaScript work on this one. A failure is thrown once: the results started after it settle unobserved.
 */
export async function inOrder<T>(n: number, ahead: number, produce: (k: number) => Promise<T>, consume: (value: T, k: number) => void | Promise<void>): Promise<void> {
  const started = new Map<number, Promise<T>>();
  const start = (k: number) => {
    if (k >= n) return;
    const p = produce(k);
    p.catch(() => undefined); // observed when its turn comes; this keeps an earlier failure from leaving it unhandled
    started.set(k, p);
  };
  for (let k = 0; k < Math.max(1, ahead); k++) start(k);
  for (let k = 0; k < n; k++) {
    const value = await started.get(k)!;
    started.delete(k);
    start(k + Math.max(1, ahead));
    await consume(value, k);
  }
}
