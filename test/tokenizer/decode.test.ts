import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadTokenizer } from "../../src/tokenizer/load.ts";
import { sharedTokenizer } from "../helpers/paths.ts";

describe("decoding (inspect and generate) gives exactly the text the ids stand for", () => {
  it("keeps the spaces Hugging Face's default clean-up would remove", async () => {
    const tok = await loadTokenizer(sharedTokenizer);
    for (const text of ["return ' '.join(parts)", "do n't stop , said he .", "a ? b ! c 's"]) {
      assert.equal(tok.decode(tok.encode(text)), text);
    }
    assert.equal(tok.decode([]), "");
  });
});
