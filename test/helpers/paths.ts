import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** `../shared` beside the checkout, as laid for developers and CI; SHARED_DIR overrides it. */
export const sharedDir = process.env.SHARED_DIR ?? resolve(repoRoot, "..", "shared");
export const sharedHub = join(sharedDir, "hub");
export const sharedTokenizer = join(sharedDir, "tokenizers", "deepseek-llm", "tokenizer.json");
export const binPath = join(repoRoot, "bin", "chuxin-data.js");
