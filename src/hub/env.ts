import { homedir } from "node:os";
import { join } from "node:path";

/** The Hub settings Python's huggingface_hub reads, so both share one cache and one endpoint. */
export interface HubEnv {
  endpoint: string;
  token: string | undefined;
  cacheDir: string;
  offline: boolean;
}

export function hubEnv(env: NodeJS.ProcessEnv = process.env): HubEnv {
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  const truthy = (v: string | undefined) => v !== undefined && ["1", "true", "yes", "on"].includes(v.toLowerCase());
  return {
    endpoint: (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, ""),
    token: env.HF_TOKEN || undefined,
    cacheDir: env.HF_HUB_CACHE ?? join(home, "hub"),
    offline: truthy(env.HF_HUB_OFFLINE),
  };
}
