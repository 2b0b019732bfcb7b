import yargs from "yargs";
import { exitCodeOf, messageOf, UsageError } from "../util/errors.ts";
import { registerBuild } from "./commands/build.ts";
import { registerInspect } from "./commands/inspect.ts";
import { registerTokenize } from "./commands/tokenize.ts";
import { registerTrain } from "./commands/train.ts";

/** Runs the CLI and returns the exit code; the only place that prints errors or chooses exit codes. */
export async function main(argv: string[]): Promise<number> {
  let usageFailure: string | undefined;
  const parser = registerTokenize(registerTrain(registerInspect(registerBuild(yargs(argv).scriptName("chuxin-data")))))
    .demandCommand(1, "name a command: build, plan, validate, schema, inspect, verify, train, eval, generate, tokenize")
    .strict()
    .help()
    .version("0.1.0")
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      usageFailure = msg;
    });
  try {
    await parser.parseAsync();
    if (usageFailure) throw new UsageError(usageFailure);
    return 0;
  } catch (error) {
    process.stderr.write(`chuxin-data: error: ${messageOf(error)}\n`);
    if (!(error instanceof UsageError) && process.env.CHUXIN_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  }
}
