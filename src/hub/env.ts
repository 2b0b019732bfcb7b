import { homedir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../util/errors.ts";

/** The Hub settings Python's huggingface_hub reads, so both share one cache and one endpoint. */
export interface HubEnv {
  endpoint: string;
  token: string | undefined;
  cacheDir: string;
  offline: boolean;
  /** HF_HUB_DOWNLOAD_TIMEOUT (seconds, default 10 as in huggingface_hub): no headers, or no bytes, for this long is a stall. */
  downloadTimeoutMs: number;
}

export function hubEnv(env: NodeJS.ProcessEnv = process.env): HubEnv {
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  const truthy = (v: string | undefined) => v !== undefined && ["1", "true", "yes", "on"].includes(v.toLowerCase());
  return {
    endpoint: (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, ""),
    token: env.HF_TOKEN || undefined,
    cacheDir: env.HF_HUB_CACHE ?? join(home, "hub"),
    offline: truthy(env.HF_HUB_OFFLINE),
    downloadTimeoutMs: downloadTimeout(env.HF_HUB_DOWNLOAD_TIMEOUT),
  };
}

function downloadTimeout(value: string | undefined): number {
  if (value === undefined || value === "") return 10_000;
  const seconds = Number(value);
  if (!(seconds > 0) || !Number.isFinite(seconds)) {
    throw new UsageError(`HF_HUB_DOWNLOAD_TIMEOUT=${JSON.stringify(value)}: expected a positive number of seconds`);
  }
  return seconds * 1000;
}
