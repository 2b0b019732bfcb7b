import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { repoRoot, sharedHub } from "./paths.ts";

/** A free loopback port, found by binding port 0. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function hubLocal(port: number) {
  const child = spawn("npm", ["run", "--silent", "hub:local", "--", sharedHub, String(port)], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on("close", r));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (out.includes("Hub API on")) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
    void exited.then(() => {
      clearInterval(timer);
      reject(new Error(`hub:local exited: ${out}`));
    });
  });
  ready.catch(() => {}); // awaited where it matters; a second server is expected to exit
  return { child, ready, exited, output: () => out };
}

describe("npm run hub:local", () => {
  it("frees its port when the npm process in front of it is killed, and says so when the port is taken", async () => {
    const port = await freePort();
    const first = hubLocal(port);
    await first.ready;
    const second = hubLocal(port);
    assert.equal(await second.exited, 2);
    assert.match(second.output(), new RegExp(`port ${port} is already in use`));
    assert.doesNotMatch(second.output(), /EADDRINUSE|at .*\.ts:\d+/);
    first.child.kill("SIGTERM"); // what `kill $!` does after `npm run hub:local &`
    await first.exited;
    const deadline = Date.now() + 5000;
    let again;
    for (;;) {
      again = hubLocal(port);
      const ok = await again.ready.then(() => true, () => false);
      if (ok || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(again.output(), /Hub API on/);
    again.child.kill("SIGTERM");
    await again.exited;
  });
});
