import yargs from "yargs";
import { exitCodeOf, Interrupted, messageOf, UsageError } from "../util/errors.ts";
import { closest } from "../util/did-you-mean.ts";
import { TOOL_VERSION } from "../util/version.ts";
import { registerBuild } from "./commands/build.ts";
import { registerDoctor } from "./commands/doctor.ts";
import { registerEval } from "./commands/eval.ts";
import { registerGenerate } from "./commands/generate.ts";
import { registerInspect } from "./commands/inspect.ts";
import { registerPublish } from "./commands/publish.ts";
import { registerTokenize } from "./commands/tokenize.ts";
import { prepareTrainCommand, registerTrain } from "./commands/train.ts";

/** Runs the CLI and returns the exit code; the only place that prints errors or chooses exit codes. */
export async function main(argv: string[]): Promise<number> {
  if (argv.find((a) => !a.startsWith("-")) === "train") await prepareTrainCommand();
  const parser = registerDoctor(registerPublish(registerTokenize(registerGenerate(registerEval(registerTrain(registerInspect(registerBuild(yargs(argv).scriptName("chuxin-data")))))))))
    .demandCommand(1, "name a command: build, plan, validate, schema, inspect, verify, train, eval, generate, tokenize, publish, doctor")
    .strict()
    .recommendCommands()
    // A scalar flag given twice takes its last value (as most CLIs do), not an array the command cannot use;
    // options declared as arrays (inspect --sequence) keep every value.
    .middleware((args) => {
      const arrays = new Set<string>((parser as unknown as { getOptions(): { array?: string[] } }).getOptions().array ?? []);
      for (const [key, value] of Object.entries(args)) {
        if (key !== "_" && Array.isArray(value) && !arrays.has(key)) args[key] = value[value.length - 1];
      }
    }, true)
    .help()
    .version(TOOL_VERSION)
    .exitProcess(false)
    // Throwing here (rather than noting the message) is what stops yargs before the command's handler:
    // a misspelt flag or a missing argument must never run the command with defaults.
    .fail((msg, err) => {
      if (err) throw err;
      const known = Object.keys((parser as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions().key ?? {});
      throw new UsageError(usageMessage(msg, argv, known));
    });
  try {
    await parser.parseAsync();
    return 0;
  } catch (error) {
    // In a data-parallel run every rank's error says which rank it is.
    const ranks = process.env.WORLD_SIZE ?? process.env.SLURM_NTASKS;
    const rank = process.env.RANK ?? process.env.SLURM_PROCID;
    const who = ranks && Number(ranks) > 1 && rank !== undefined ? ` rank ${rank}/${ranks}:` : "";
    // Ctrl-C is no error: what was kept and how to go on, once.
    process.stderr.write(`chuxin-data:${who}${error instanceof Interrupted ? "" : " error:"} ${messageOf(error)}\n`);
    // With --json, a script reading stdout sees how the command ended as its last event.
    if (argv.includes("--json")) {
      process.stdout.write(JSON.stringify({ type: "error", time: new Date().toISOString(), exit_code: exitCodeOf(error), message: messageOf(error) }) + "\n");
    }
    if (!(error instanceof UsageError) && process.env.CHUXIN_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  }
}

const COMMANDS = new Set(["build", "plan", "validate", "schema", "inspect", "verify", "train", "eval", "generate", "tokenize", "publish", "doctor"]);

/** The closest known flag to a misspelt one, if any (not yargs' camelCase aliases). */
function closestFlag(name: string, known: string[]): string | undefined {
  return closest(name, known.filter((k) => k.length > 1 && !/[A-Z]/.test(k) && k !== "$0"));
}

/**
 * yargs' wording, made plainer: the command a suggestion is for, each unknown flag once (not also camelCased) with
 * the nearest flag the command has, and the help of the command that was run.
 */
function usageMessage(msg: string, argv: string[], known: string[]): string {
  const command = argv.find((a) => !a.startsWith("-"));
  const help = command && COMMANDS.has(command) ? `see 'chuxin-data ${command} --help'` : "see 'chuxin-data --help'";
  if (/^Not enough non-option arguments/.test(msg) && command) {
    const positional = { build: "RECIPE", plan: "RECIPE", validate: "RECIPE", inspect: "OUT", verify: "OUT" }[command];
    if (positional) return `'${command}' needs ${positional}: chuxin-data ${command} ${positional}`;
  }
  if (/^Did you mean/.test(msg)) return `unknown command '${command ?? ""}'. ${msg} See 'chuxin-data --help'`;
  const unknown = msg.match(/^Unknown arguments?: (.*)$/);
  if (unknown) {
    const names = unknown[1]!.split(", ");
    const camel = (n: string) => n.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const shown = names.filter((n) => n.includes("-") || !names.some((m) => m !== n && camel(m) === n));
    const isOption = (n: string) => argv.some((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}`);
    const flags = shown.filter(isOption);
    const words = shown.filter((n) => !isOption(n));
    const parts: string[] = [];
    if (words.length) parts.push(words[0] === command ? `unknown command '${command}'` : `unexpected argument${words.length > 1 ? "s" : ""} ${words.map((w) => `'${w}'`).join(", ")}`);
    if (flags.length) {
      const named = flags.map((n) => {
        const near = closestFlag(n, known);
        return `${n.length > 1 ? `--${n}` : `-${n}`}${near ? ` (did you mean --${near}?)` : ""}`;
      });
      parts.push(`unknown option${flags.length > 1 ? "s" : ""} ${named.join(", ")}`);
    }
    return `${parts.join("; ")}; ${help}`;
  }
  return `${msg}; ${help}`;
}
