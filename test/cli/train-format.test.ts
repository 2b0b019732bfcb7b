import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clock } from "../../src/cli/train-events.ts";

describe("train's progress line", () => {
  it("prints the ETA as h:mm:ss", () => {
    assert.equal(clock(0), "0:00:00");
    assert.equal(clock(59.6), "0:01:00");
    assert.equal(clock(3725), "1:02:05");
    assert.equal(clock(100 * 3600 + 1), "100:00:01");
    assert.equal(clock(-3), "0:00:00");
  });
});
