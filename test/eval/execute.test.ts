/**
 * Running model-written code: HumanEval's own solutions pass through the task's program template, a wrong one
 * fails, a hang is killed at the limit, and the program cannot reach the network.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { executionConfinement, runProgram } from "../../src/eval/execute.ts";
import { loadTaskData } from "../../src/tasks/dataset.ts";
import { loadTask } from "../../src/tasks/load.ts";
import { pyStr } from "../../src/tasks/template.ts";
import { HubClient } from "../../src/hub/client.ts";
import { hubEnv } from "../../src/hub/env.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { sharedHub } from "../helpers/paths.ts";

describe("executing generated code", () => {
  let server: HubServer;
  let work: string;
  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-exec-test-"));
  });
  after(async () => {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  });
  const prefix = () => executionConfinement(false, "python3");

  it("the canonical solutions of the first problems pass; a wrong body fails", async () => {
    const task = await loadTask("humaneval");
    const client = new HubClient(hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") }));
    const data = await loadTaskData(client, task, undefined);
    const rows = data.subsets[0]!.rows;
    assert.equal(rows.length, 164);
    for (const row of rows.slice(0, 5)) {
      const program = pyStr(task.templates.program!.render({ ...row, completion: row.canonical_solution! }));
      const outcome = await runProgram(program, task.spec.execution!.timeout_s, prefix(), "python3");
      assert.deepEqual(outcome, { passed: true, result: "passed" }, String(row.task_id));
    }
    const wrong = pyStr(task.templates.program!.render({ ...rows[0]!, completion: "    return False\n" }));
    const outcome = await runProgram(wrong, 3, prefix(), "python3");
    assert.equal(outcome.passed, false);
    assert.match(outcome.result, /^failed: AssertionError/);
  });

  it("kills a program that runs past its limit", async () => {
    const started = performance.now();
    const outcome = await runProgram("while True:\n    pass\n", 1, prefix(), "python3");
    assert.deepEqual(outcome, { passed: false, result: "timed out" });
    assert.ok(performance.now() - started < 5000);
  });

  it("returns at the limit even when the program's descendants escape its process group holding its stderr, and none of them outlives it", async () => {
    const marker = join(work, "escaped-pid");
    // The child calls setsid() (a process group of its own), keeps stderr open, and would write its pid and live 60 s.
    const program = [
      "import os, sys, time",
      "if os.fork() == 0:",
      "    os.setsid()",
      "    if os.fork() == 0:",
      `        open(${JSON.stringify(marker)}, "w").write(str(os.getpid()))`,
      "        time.sleep(60)",
      "        os._exit(0)",
      "    os._exit(0)",
      "time.sleep(0.5)",
      "print('parent done', file=sys.stderr)",
    ].join("\n");
    for (const [label, body, limit] of [["exits at once", program, 3], ["runs past its limit", program + "\ntime.sleep(60)\n", 1]] as const) {
      const started = performance.now();
      const outcome = await runProgram(body, limit, prefix(), "python3");
      const took = (performance.now() - started) / 1000;
      assert.ok(took < limit + 2, `${label}: took ${took.toFixed(1)} s`);
      assert.equal(outcome.result, label === "exits at once" ? "passed" : "timed out", label);
    }
    if (prefix().pidNamespace) {
      // The pid the grandchild saw is its own namespace's; no process of that command line is left on the host.
      await new Promise((r) => setTimeout(r, 300));
      const left = spawnSync("pgrep", ["-f", "chuxin-exec-.*program.py"], { encoding: "utf8" }).stdout.trim();
      assert.equal(left, "", "no descendant outlives the program");
    }
  });

  it("gives the program no network, not even this machine's loopback", async () => {
    const listener = createServer((s) => s.end()).listen(0, "127.0.0.1");
    await new Promise((r) => listener.once("listening", r));
    const port = (listener.address() as { port: number }).port;
    try {
      const outcome = await runProgram(`import socket\nsocket.create_connection(("127.0.0.1", ${port}), timeout=2)\n`, 5, prefix(), "python3");
      assert.equal(outcome.passed, false);
      assert.match(outcome.result, /^failed: .*(OSError|Network is unreachable|ConnectionRefused)/);
    } finally {
      listener.close();
    }
  });
});
