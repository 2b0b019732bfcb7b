/**
 * Start-up time of the CLI: `--help`, `validate RECIPE`, `build --help` and `tokenize` of one word (the native
 * tokenizer over ../shared's DeepSeek tokenizer.json), each run N times (median and
 * min of wall time, process spawn included), for the compiled dist/ (what users run), the TypeScript
 * sources through tsx (CHUXIN_FROM_SOURCE=1), and optionally an older commit (--baseline REV: a temporary
 * git worktree sharing this checkout's node_modules and native build), all in one run.
 *
 *   node --import tsx bench/startup.ts [--runs 15] [--baseline a1b0ad5]
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot, sharedTokenizer } from "../test/helpers/paths.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "15" }, baseline: { type: "string" } } });
const runs = Number(values.runs);

function time(bin: string, args: string[], env: Record<string, string> = {}): { median: number; min: number } {
  const samples: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const started = performance.now();
    const r = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, CI: "true", ...env }, stdio: "ignore" });
    const ms = performance.now() - started;
    if (r.status !== 0) throw new Error(`${bin} ${args.join(" ")} exited ${r.status}`);
    if (i > 0) samples.push(ms); // the first run warms the file cache
  }
  samples.sort((a, b) => a - b);
  return { median: samples[Math.floor(samples.length / 2)]!, min: samples[0]! };
}

const word = join(mkdtempSync(join(tmpdir(), "chuxin-startup-word-")), "word.txt");
writeFileSync(word, "hello\n");
const commands: [string, string[]][] = [
  ["--help", ["--help"]],
  ["validate", ["validate", join(repoRoot, "recipes", "sample.yaml")]],
  ["build --help", ["build", "--help"]],
  ["tokenize one word", ["tokenize", word, "--tokenizer", sharedTokenizer]],
];

const sides: { name: string; bin: string; env?: Record<string, string> }[] = [];
let worktree: string | undefined;
if (values.baseline) {
  worktree = mkdtempSync(join(tmpdir(), "chuxin-startup-"));
  execFileSync("git", ["-C", repoRoot, "worktree", "add", "--detach", worktree, values.baseline], { stdio: "ignore" });
  symlinkSync(join(repoRoot, "node_modules"), join(worktree, "node_modules"));
  symlinkSync(join(repoRoot, "native", "build"), join(worktree, "native", "build"));
  // Its own compiled dist/, as a user of that commit runs it (not its sources through tsx).
  execFileSync("npm", ["run", "build:ts"], { cwd: worktree, stdio: "ignore" });
  sides.push({ name: `baseline ${values.baseline}`, bin: join(worktree, "bin", "chuxin-data.js") });
}
if (!existsSync(join(repoRoot, "dist", ".built"))) throw new Error("dist/ is not built: run npm run build:ts first");
sides.push({ name: "sources via tsx", bin: join(repoRoot, "bin", "chuxin-data.js"), env: { CHUXIN_FROM_SOURCE: "1" } });
sides.push({ name: "compiled dist/", bin: join(repoRoot, "bin", "chuxin-data.js") });

try {
  const rows = commands.map(([name, args]) => ({ name, results: sides.map((s) => time(s.bin, args, s.env)) }));
  const cpu = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], { encoding: "utf8" }).trim();
  process.stdout.write(`start-up, median (min) of ${runs} runs, ms — ${cpu}, node ${process.version}\n\n`);
  process.stdout.write(`| command | ${sides.map((s) => s.name).join(" | ")} |\n|---|${sides.map(() => "---:").join("|")}|\n`);
  for (const r of rows) process.stdout.write(`| ${r.name} | ${r.results.map((x) => `${x.median.toFixed(0)} (${x.min.toFixed(0)})`).join(" | ")} |\n`);
  const last = sides.length - 1;
  if (sides.length > 1) {
    process.stdout.write(`\nratio ${sides[0]!.name} / ${sides[last]!.name}: ${rows.map((r) => `${r.name} ${(r.results[0]!.median / r.results[last]!.median).toFixed(2)}x`).join(", ")}\n`);
  }
} finally {
  if (worktree) {
    execFileSync("git", ["-C", repoRoot, "worktree", "remove", "--force", worktree], { stdio: "ignore" });
    rmSync(worktree, { recursive: true, force: true });
  }
}
