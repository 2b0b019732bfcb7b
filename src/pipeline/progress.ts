/** Typed progress events every long stage reports; the CLI decides how to render them. */
export type Stage = "resolve" | "download" | "ingest" | "quality" | "decontaminate" | "dedup" | "near-dedup" | "tokenize" | "sample" | "pack" | "manifest" | `eval ${string}`;

export type ProgressEvent =
  | { type: "stage_start"; stage: Stage; total?: number; unit?: string }
  | { type: "stage_progress"; stage: Stage; done: number; total?: number; unit?: string; bytes?: number }
  | { type: "stage_end"; stage: Stage; done?: number; unit?: string; seconds: number; reused?: boolean }
  /** Bytes of one file received so far, while it downloads. */
  | { type: "download_progress"; stage: Stage; path: string; received: number; total: number }
  | { type: "note"; stage: Stage; message: string }
  | { type: "retry"; stage: Stage; what: string; attempt: number; error: string };

export type ProgressSink = (event: ProgressEvent) => void;

/** Times one stage and reports its start and end. */
export async function runStage<T>(
  sink: ProgressSink,
  stage: Stage,
  body: () => Promise<T>,
  describe?: (result: T) => { done?: number; unit?: string; reused?: boolean },
): Promise<T> {
  const started = performance.now();
  sink({ type: "stage_start", stage });
  const result = await body();
  sink({ type: "stage_end", stage, seconds: (performance.now() - started) / 1000, ...describe?.(result) });
  return result;
}
