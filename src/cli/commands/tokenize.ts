import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Argv } from "yargs";
import type { TokenizerImpl } from "../../tokenizer/select.ts";
import { UsageError } from "../../util/errors.ts";
import { MAX_THREADS, wholeNumber } from "../numbers.ts";

export function registerTokenize(y: Argv): Argv {
  return y.command(
    "tokenize [file]",
    "tokenize JSONL (a `text` field) or plain text (one document per line) and write the ids as JSONL",
    (c) =>
      c
        .positional("file", { type: "string", describe: "input file (default: stdin)" })
        .option("impl", { choices: ["native", "rust", "js"], default: "native", describe: "native: ours; rust: Hugging Face tokenizers; js: @huggingface/tokenizers" })
        .option("tokenizer", { type: "string", describe: "tokenizer.json path or Hub repo[@revision] (default: deepseek-ai/deepseek-llm-7b-base)" })
        .option("format", { choices: ["jsonl", "text"], describe: "input format (default: jsonl when lines start with '{')" })
        .option("threads", { type: "number", describe: "native tokenizer threads (default: cores)" })
        .option("batch", { type: "number", default: 4096, describe: "documents per batch" }),
    async (a) => {
      wholeNumber("threads", a.threads, 1, MAX_THREADS, "native tokenizer threads");
      wholeNumber("batch", a.batch, 1, 1_000_000, "documents per batch");
      const { openTokenizer, tokenizerFile } = await import("../../tokenizer/select.ts");
      const tokenizer = await openTokenizer(await tokenizerFile(a.tokenizer), a.impl as TokenizerImpl, a.threads);
      const input = createInterface({ input: a.file ? createReadStream(a.file) : process.stdin, crlfDelay: Infinity });
      let format = a.format;
      let line = 0;
      let batch: string[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        const ids = await tokenizer.encodeBatch(batch);
        process.stdout.write(ids.map((x) => JSON.stringify({ ids: x })).join("\n") + "\n");
        batch = [];
      };
      for await (const raw of input) {
        line++;
        format ??= raw.trimStart().startsWith("{") ? "jsonl" : "text";
        if (format === "jsonl") {
          if (raw.trim() === "") continue;
          let value: unknown;
          try {
            value = JSON.parse(raw);
          } catch {
            throw new UsageError(`${a.file ?? "stdin"}:${line}: not valid JSON; use --format text for plain text`);
          }
          const text = (value as { text?: unknown })?.text;
          if (typeof text !== "string") throw new UsageError(`${a.file ?? "stdin"}:${line}: no string field 'text'`);
          batch.push(text);
        } else batch.push(raw);
        if (batch.length >= a.batch) await flush();
      }
      await flush();
    },
  );
}
