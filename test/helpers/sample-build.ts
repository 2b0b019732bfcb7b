import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { runCli } from "./cli.ts";
import { HubServer } from "./hub-server.ts";
import { repoRoot, sharedHub } from "./paths.ts";

export interface SampleBuild {
  server: HubServer;
  /** a fresh temp folder, removed after the suite */
  work: string;
  /** HF_ENDPOINT (the loopback Hub) and HF_HOME (a cache inside `work`) */
  env: Record<string, string>;
  /** the bundled sample recipe built into `work/sample` */
  data: string;
}

/**
 * Registers before/after hooks in the calling suite: a loopback Hub over ../shared/hub and the bundled sample
 * recipe built through it. The returned object is filled in once `before` has run.
 */
export function useSampleBuild(prefix: string): SampleBuild {
  const fixture = {} as SampleBuild;
  before(async () => {
    fixture.server = await new HubServer({ root: sharedHub }).start();
    fixture.work = await mkdtemp(join(tmpdir(), prefix));
    fixture.env = { HF_ENDPOINT: fixture.server.url, HF_HOME: join(fixture.work, "hf") };
    fixture.data = join(fixture.work, "sample");
    const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", fixture.data], { env: fixture.env });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await fixture.server?.stop();
    if (fixture.work) await rm(fixture.work, { recursive: true, force: true });
  });
  return fixture;
}
