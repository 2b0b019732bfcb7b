/**
 * Error kinds the CLI maps to exit codes: usage and recipe mistakes are the user's to fix (exit 2),
 * everything else is a runtime failure (exit 1).
 */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export class RuntimeFailure extends Error {
  readonly exitCode = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RuntimeFailure";
  }
}

/** The user stopped the command (Ctrl-C); what was kept is in the message. Exit 130, as shells report SIGINT. */
export class Interrupted extends Error {
  readonly exitCode = 130;
  constructor(message: string) {
    super(message);
    this.name = "Interrupted";
  }
}

/** A launched process (a rank) failed; the launcher ends with its status. */
export class ChildFailed extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "ChildFailed";
  }
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return 2;
  if (error instanceof Interrupted) return 130;
  if (error instanceof ChildFailed) return error.exitCode;
  return 1;
}

/** Removes anything that looks like a Hugging Face token from a message before it is shown or stored. */
export function redactSecrets(text: string): string {
  let out = text.replace(/hf_[A-Za-z0-9]{6,}/g, "hf_***");
  const token = process.env.HF_TOKEN;
  if (token && token.length >= 4) out = out.split(token).join("***");
  return out.replace(/(Bearer\s+)[^\s"']+/gi, "$1***");
}

export function messageOf(error: unknown): string {
  return redactSecrets(error instanceof Error ? error.message : String(error));
}
