/**
 * The tokenizer files a checkpoint carries: under Hugging Face tokenizers' default call (special tokens on), the
 * ids are those training used, with BOS exactly when the build added it.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { Tokenizer as RustTokenizer } from "tokenizers";
import { trainedTokenizerConfig, trainedTokenizerJson } from "../../src/tokenizer/hf-files.ts";
import { sharedTokenizer } from "../helpers/paths.ts";

const BOS = 100000;
const EOS = 100001;

describe("a checkpoint's tokenizer.json and tokenizer_config.json", () => {
  it("adds BOS under the default call only when the build did; the rest of the pipeline is unchanged", async () => {
    const original = await readFile(sharedTokenizer);
    const plain = RustTokenizer.fromString(original.toString("utf8"));
    for (const addBos of [false, true]) {
      const tok = RustTokenizer.fromString(trainedTokenizerJson(original, { eosId: EOS, bosId: BOS, addBos }).toString("utf8"));
      for (const text of ["Hello, world!", "初心是一个完全开源的语言模型。", "def f(x):\n    return x\n"]) {
        const trained = (await plain.encode(text, null, { addSpecialTokens: false })).getIds();
        const got = (await tok.encode(text)).getIds();
        assert.deepEqual(got, addBos ? [BOS, ...trained] : trained, `add_bos ${addBos}: ${text}`);
      }
    }
    // DeepSeek's own file adds BOS under the default call: the reason the checkpoint's copy is rewritten.
    assert.equal((await plain.encode("Hello")).getIds()[0], BOS);
  });

  it("names the class that keeps tokenizer.json's own pipeline, and the specials by their strings", async () => {
    const original = await readFile(sharedTokenizer);
    const config = trainedTokenizerConfig(original, { eosId: EOS, bosId: BOS, addBos: false }, 4096);
    assert.equal(config.tokenizer_class, "PreTrainedTokenizerFast");
    assert.equal(config.bos_token, "<｜begin▁of▁sentence｜>");
    assert.equal(config.eos_token, "<｜end▁of▁sentence｜>");
    assert.equal(config.add_bos_token, false);
    assert.equal(config.model_max_length, 4096);
  });
});
