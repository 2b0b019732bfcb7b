/** `generate`: text sampled from a checkpoint. */
import { cpus } from "node:os";
import type { Argv } from "yargs";
import { pickDevice } from "../device.ts";
import { MAX_THREADS, numberIn, wholeNumber } from "../numbers.ts";

export function registerGenerate(y: Argv): Argv {
  return y    .command(
      "generate",
      "sample text from a checkpoint",
      (c) =>
        c
          .option("checkpoint", { type: "string", demandOption: true, describe: "a checkpoint folder or a run folder (its latest)" })
          .option("prompt", { type: "string", demandOption: true, describe: "text to continue" })
          .option("max-tokens", { type: "number", default: 64, describe: "tokens to generate at most (stops at EOS)" })
          .option("temperature", { type: "number", default: 0, describe: "0: greedy" })
          .option("top-p", { type: "number", default: 1, describe: "nucleus sampling: keep the smallest set of tokens with this much probability" })
          .option("seed", { type: "number", default: 0, describe: "seeds sampling" })
          .option("device", { choices: ["cpu", "cuda", "auto"], default: "auto", describe: "where to run (auto: the GPU when one is usable)" })
          .option("threads", { type: "number", default: cpus().length, describe: "CPU threads" })
          .option("json", { type: "boolean", default: false, describe: "one JSON object on stdout" }),
      async (a) => {
        wholeNumber("max-tokens", a["max-tokens"], 1, 1 << 21, "tokens to generate; the model's context bounds them too");
        numberIn("temperature", a.temperature, 0, 100, "0 is greedy");
        numberIn("top-p", a["top-p"], 0, 1, "the probability mass kept", true);
        wholeNumber("seed", a.seed, 0, Number.MAX_SAFE_INTEGER, "seeds sampling");
        wholeNumber("threads", a.threads, 1, MAX_THREADS, "CPU threads");
        const [{ openCheckpoint }, { generate }] = await Promise.all([import("../../eval/checkpoint.ts"), import("../../eval/generate.ts")]);
        const ckpt = await openCheckpoint(a.checkpoint, await pickDevice(a.device), a.threads);
        try {
          const r = await generate(ckpt, a.prompt, { maxTokens: a["max-tokens"], temperature: a.temperature, topP: a["top-p"], seed: a.seed }, a.json ? undefined : (t) => process.stdout.write(t));
          if (a.json) process.stdout.write(JSON.stringify({ prompt: a.prompt, completion: r.text, ids: r.ids }) + "\n");
          else process.stdout.write("\n");
        } finally {
          ckpt.model.dispose();
        }
      },
    );
}
