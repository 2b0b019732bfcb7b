import { readFileSync } from "node:fs";

/** The tool's version, read from package.json: the one place it is written. */
export const TOOL_VERSION: string = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version;
