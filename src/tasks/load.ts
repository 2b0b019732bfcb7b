/** Finds and checks task files: a shipped name (`tasks/<name>.yaml` in the package) or a path the user wrote. */
import { readdir, readFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { closest } from "../recipe/suggest.ts";
import { parseYamlWith, YamlFileError } from "../recipe/yaml-schema.ts";
import { sha256Hex } from "../util/hash.ts";
import { UsageError } from "../util/errors.ts";
import { taskSchema, type TaskSpec } from "./schema.ts";
import { compileTemplate, TemplateError, type Template } from "./template.ts";

export const SHIPPED_TASKS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "tasks");

export interface LoadedTask {
  spec: TaskSpec;
  file: string;
  sha256: string;
  templates: {
    derive: [string, Template][];
    description: Template;
    text: Template;
    choice?: Template;
    target?: Template;
    program?: Template;
    dataConfig?: Template;
    dataFiles: [string, Template][];
  };
}

export async function shippedTaskNames(): Promise<string[]> {
  const entries = await readdir(SHIPPED_TASKS_DIR).catch(() => [] as string[]);
  return entries.filter((e) => e.endsWith(".yaml")).map((e) => e.slice(0, -5)).sort();
}

export function parseTask(text: string, file: string): LoadedTask {
  const { data: spec, where } = parseYamlWith(taskSchema, text, file);
  const problems: string[] = [];
  const compile = (source: string, path: (string | number)[]): Template => {
    try {
      return compileTemplate(source);
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      problems.push(`${where(path)}: ${path.join(".")}: ${error.message}`);
      return compileTemplate("");
    }
  };
  const templates: LoadedTask["templates"] = {
    derive: Object.entries(spec.derive ?? {}).map(([k, v]) => [k, compile(v, ["derive", k])]),
    description: compile(spec.description, ["description"]),
    text: compile(spec.doc_to_text, ["doc_to_text"]),
    choice: typeof spec.doc_to_choice === "string" ? compile(spec.doc_to_choice, ["doc_to_choice"]) : undefined,
    target: typeof spec.doc_to_target === "string" ? compile(spec.doc_to_target, ["doc_to_target"]) : undefined,
    program: spec.execution ? compile(spec.execution.program, ["execution", "program"]) : undefined,
    dataConfig: spec.dataset.config ? compile(spec.dataset.config, ["dataset", "config"]) : undefined,
    dataFiles: Object.entries(spec.dataset.data_files ?? {}).map(([k, v]) => [k, compile(v, ["dataset", "data_files", k])]),
  };
  if (spec.dataset.data_files) {
    for (const split of [spec.dataset.split, spec.dataset.fewshot_split]) {
      if (split && !(split in spec.dataset.data_files)) problems.push(`${where(["dataset", "data_files"])}: dataset.data_files: no entry for split '${split}'`);
    }
  }
  if (problems.length) throw new YamlFileError(file, problems);
  return { spec, file, sha256: sha256Hex(text), templates };
}

/** `name` is a shipped task, or a path to a YAML file (anything with a slash or a .yaml/.yml ending). */
export async function loadTask(name: string): Promise<LoadedTask> {
  const isPath = /[\\/]/.test(name) || /\.ya?ml$/i.test(name);
  const file = isPath ? resolve(name) : join(SHIPPED_TASKS_DIR, `${name}.yaml`);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (isPath) throw new UsageError(`--tasks ${name}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)}); check the path`);
    const known = await shippedTaskNames();
    const hint = closest(name, known);
    throw new UsageError(`--tasks: unknown task '${name}'${hint ? ` — did you mean '${hint}'?` : ""} (shipped: ${known.join(", ")}; or give a path to a task YAML file)`);
  }
  const task = parseTask(text, isPath ? name : join("tasks", basename(file)));
  return task;
}

/** Every task of a comma-separated --tasks list, each once, in the order given. */
export async function loadTasks(list: string): Promise<LoadedTask[]> {
  const names = [...new Set(list.split(",").map((s) => s.trim()).filter(Boolean))];
  if (names.length === 0) throw new UsageError("--tasks: name at least one task (e.g. --tasks arc_easy,cmmlu)");
  const tasks = await Promise.all(names.map(loadTask));
  const seen = new Map<string, string>();
  for (const t of tasks) {
    const other = seen.get(t.spec.task);
    if (other) throw new UsageError(`--tasks: ${other} and ${t.file} both define task '${t.spec.task}'`);
    seen.set(t.spec.task, t.file);
  }
  return tasks;
}
