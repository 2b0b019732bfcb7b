import { readFile } from "node:fs/promises";
import { cpus } from "node:os";
import { existsSync } from "node:fs";
import { UsageError } from "../util/errors.ts";
import { parseTokenizerJson } from "./json.ts";
import { sha256Hex } from "../util/hash.ts";
import { nativeTokenizerFromSpec } from "./native.ts";
import { nativeTokenizerSpec } from "./spec.ts";
import { readCachedSpec, writeCachedSpec } from "./spec-cache.ts";

// The Hub client, the recipe schema (zod) and the JS tokenizer load only when used: a file and the native
// tokenizer, the common case, start in a fraction of a second.

export type TokenizerImpl = "native" | "rust" | "js";

export interface AnyTokenizer {
  impl: TokenizerImpl;
  encodeBatch(texts: string[]): Promise<number[][]>;
}

/** A tokenizer.json path, or a Hub model repo (optionally `repo@revision`) fetched into the HF cache. */
export async function tokenizerFile(spec: string | undefined): Promise<string> {
  const s = spec ?? (await import("../recipe/schema.ts")).DEFAULT_TOKENIZER_REPO;
  if (existsSync(s)) return s;
  const [{ HubClient }, { hubEnv }] = await Promise.all([import("../hub/client.ts"), import("../hub/env.ts")]);
  const [id, revision = "main"] = s.split("@") as [string, string?];
  if (!/^[\w.-]+\/[\w.-]+$/.test(id)) throw new UsageError(`--tokenizer ${s}: neither a file nor a Hub repo id`);
  const client = new HubClient(hubEnv());
  const repo = { type: "model" as const, id };
  const commit = await client.resolveRevision(repo, revision);
  return (await client.fetchFile(repo, commit, "tokenizer.json")).localPath;
}

/** The same tokenizer.json through one of three implementations, to compare them on any text. */
export async function openTokenizer(path: string, impl: TokenizerImpl, threads = cpus().length): Promise<AnyTokenizer> {
  const text = await readFile(path, "utf8");
  if (impl === "native") {
    // A spec built before from this very file (by sha256) skips parsing the JSON and building the spec.
    const cached = readCachedSpec(sha256Hex(text));
    let t;
    if (cached) t = nativeTokenizerFromSpec(cached.spec, cached.info, threads);
    else {
      const { json, info } = parseTokenizerJson(text, path);
      const spec = nativeTokenizerSpec(json);
      t = nativeTokenizerFromSpec(spec, info, threads);
      await writeCachedSpec(info, spec);
    }
    return {
      impl,
      encodeBatch: async (texts) => {
        const { ids, lengths } = await t.encodeBatch(texts);
        let at = 0;
        return Array.from(lengths, (n) => Array.from(ids.subarray(at, (at += n))));
      },
    };
  }
  if (impl === "js") {
    const t = (await import("./load.ts")).tokenizerFromText(text, path);
    return { impl, encodeBatch: async (texts) => texts.map((x) => t.encode(x)) };
  }
  let rust: typeof import("tokenizers");
  try {
    rust = await import("tokenizers");
  } catch {
    throw new UsageError("--impl rust needs Hugging Face's Rust binding: npm install tokenizers");
  }
  const t = rust.Tokenizer.fromString(text);
  return { impl, encodeBatch: async (texts) => (await t.encodeBatch(texts, { addSpecialTokens: false })).map((e) => e.getIds()) };
}
