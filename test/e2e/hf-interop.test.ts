/**
 * A trained checkpoint in the Hugging Face stack, as a Python user meets it: transformers' AutoTokenizer gives our
 * ids under its default call (no BOS the data did not have), and AutoModelForCausalLM our logits. Needs a Python
 * with torch and transformers: scripts/hf-venv.sh makes .venv-hf from this machine's local wheels (.ci/run does),
 * or CHUXIN_HF_PYTHON names one.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { scoringRunOptions } from "../../src/eval/benchmarks.ts";
import { openCheckpoint } from "../../src/eval/checkpoint.ts";
import { loadTokenizer } from "../../src/tokenizer/load.ts";
import { runCli, spawnAsync } from "../helpers/cli.ts";
import { repoRoot } from "../helpers/paths.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

const python = process.env.CHUXIN_HF_PYTHON ?? join(repoRoot, ".venv-hf", "bin", "python");
const hasPython = existsSync(python);

/** English, Chinese, code and mixed strings, where a wrong pre-tokenizer shows. */
const TEXTS = [
  "Hello, world!",
  "The quick brown fox jumps over the lazy dog.",
  "  leading spaces and trailing  ",
  "初心是一个完全开源的语言模型。",
  "北京是中国的首都，也是一座历史悠久的城市。",
  "def add(a, b):\n    return a + b\n",
  "for (let i = 0; i < n; i++) { sum += x[i]; }",
  "Mixed 中文 and English, 123 numbers.",
  "emoji 🙂 and accents: café naïve",
  "tabs\tand\nnewlines\r\n",
];

// Skipped only off CI: .ci/run makes the venv, so there a missing one fails here instead.
describe("a checkpoint in transformers", { skip: !hasPython && !process.env.CI && `no Python with transformers (${python}); run scripts/hf-venv.sh` }, () => {
  const fixture = useSampleBuild("chuxin-hf-interop-");
  let run: string;
  before(async () => {
    run = join(fixture.work, "run");
    const r = await runCli(
      ["train", "--data", fixture.data, "--out", run, "--steps", "3", "--model", "tiny", "--context", "128", "--micro-batch", "2", "--precision", "fp32", "--threads", "2", "--eval-every", "0"],
      { env: fixture.env },
    );
    assert.equal(r.code, 0, r.stderr);
  });

  it("the build's dataset card says how it was made and loads it in Python as written", async () => {
    const card = await readFile(join(fixture.data, "README.md"), "utf8");
    assert.match(card, /^---\npretty_name: "sample"\nsize_categories:\n- n<1K\nsource_datasets:\n- [\w-]+\/[\w.-]+\n/);
    assert.match(card, /npx chuxin-data build sample\.yaml --locked --lock recipe\.lock\.json/);
    // The card's Python block, run in the build folder as a reader would.
    const code = card.match(/```python\n([\s\S]*?)```/)![1]!;
    const py = await spawnAsync(python, ["-c", code], { cwd: fixture.data });
    assert.equal(py.code, 0, py.stderr);
    assert.ok(py.stdout.trim().length > 0, "it decodes the first sequence");
  });

  it("AutoTokenizer gives our ids with its default call (no BOS: the build added none), and AutoModelForCausalLM our logits", async () => {
    const ckpt = join(run, "checkpoint-0000003");
    const config = JSON.parse(await readFile(join(ckpt, "tokenizer_config.json"), "utf8"));
    assert.equal(config.tokenizer_class, "PreTrainedTokenizerFast");
    assert.equal(config.add_bos_token, false);
    const generation = JSON.parse(await readFile(join(ckpt, "generation_config.json"), "utf8"));
    assert.equal(generation.pad_token_id, generation.eos_token_id);
    const textsFile = join(fixture.work, "texts.json");
    await writeFile(textsFile, JSON.stringify(TEXTS));
    const py = await spawnAsync(python, [join(repoRoot, "test", "helpers", "hf_check.py"), ckpt, textsFile], { env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_VERBOSITY: "error" } });
    assert.equal(py.code, 0, py.stderr);
    const hf = JSON.parse(py.stdout.trim().split("\n").pop()!) as { transformers: string; tokenizer_class: string; ids: number[][]; last_logits: number[][] };
    const tokenizer = await loadTokenizer(join(ckpt, "tokenizer.json"));
    const m = await openCheckpoint(ckpt, "cpu", 2);
    try {
      for (const [i, text] of TEXTS.entries()) {
        const ours = tokenizer.encode(text);
        assert.deepEqual(hf.ids[i], ours, `transformers ${hf.transformers} (${hf.tokenizer_class}) ids of ${JSON.stringify(text)}`);
        const logits = await m.model.lastLogits(Int32Array.from(ours), 1, ours.length, scoringRunOptions(1, m.eosId));
        let worst = 0;
        for (let v = 0; v < logits.length; v++) worst = Math.max(worst, Math.abs(logits[v]! - hf.last_logits[i]![v]!));
        assert.ok(worst < 1e-3, `${JSON.stringify(text)}: logits differ by up to ${worst}`);
      }
    } finally {
      m.model.dispose();
    }
  });
  it("a checkpoint extended with --rope-scaling linear, yarn or llama3 (and --rope-theta) gives transformers' logits, at long positions too", async () => {
    const texts = [TEXTS[1]!, TEXTS[4]!, Array(40).fill("The quick brown fox jumps over the lazy dog.").join(" ")];
    const textsFile = join(fixture.work, "texts-scaled.json");
    await writeFile(textsFile, JSON.stringify(texts));
    const tokenizer = await loadTokenizer(join(run, "checkpoint-0000003", "tokenizer.json"));
    for (const [type, factor] of [["linear", 2], ["yarn", 4], ["llama3", 8]] as const) {
      const scaled = join(fixture.work, `run-${type}`);
      const r = await runCli(
        ["train", "--data", fixture.data, "--out", scaled, "--init-from", run, "--rope-scaling", type, "--rope-factor", String(factor), "--rope-theta", "20000",
          "--steps", "1", "--context", "128", "--micro-batch", "2", "--precision", "fp32", "--threads", "2", "--eval-every", "0"],
        { env: fixture.env },
      );
      assert.equal(r.code, 0, r.stderr);
      const ckpt = join(scaled, "checkpoint-0000001");
      const config = JSON.parse(await readFile(join(ckpt, "config.json"), "utf8"));
      assert.equal(config.rope_scaling.rope_type, type);
      assert.equal(config.rope_theta, 20000);
      const py = await spawnAsync(python, [join(repoRoot, "test", "helpers", "hf_check.py"), ckpt, textsFile], { env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_VERBOSITY: "error" } });
      assert.equal(py.code, 0, py.stderr);
      const hf = JSON.parse(py.stdout.trim().split("\n").pop()!) as { last_logits: number[][] };
      const m = await openCheckpoint(ckpt, "cpu", 2);
      try {
        assert.equal(m.config.ropeScaling?.type, type);
        for (const [i, text] of texts.entries()) {
          const ids = tokenizer.encode(text);
          const logits = await m.model.lastLogits(Int32Array.from(ids), 1, ids.length, scoringRunOptions(1, m.eosId));
          let worst = 0;
          for (let v = 0; v < logits.length; v++) worst = Math.max(worst, Math.abs(logits[v]! - hf.last_logits[i]![v]!));
          assert.ok(worst < 1e-3, `${type}, ${ids.length} tokens: logits differ by up to ${worst}`);
        }
      } finally {
        m.model.dispose();
      }
    }
  });
});
