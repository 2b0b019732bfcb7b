/**
 * A task's rows from the Hub: the revision resolved to a commit (or taken from the lock), each split's files
 * found through the dataset card's `configs:` (or the task's data_files), downloaded through the project's
 * Hub client and cache (sha256-checked), and read in file order (parquet by DuckDB, JSON lines here).
 */
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { createGunzip } from "node:zlib";
import { parse as parseYaml } from "yaml";
import type { HubClient, RemoteFile, RepoRef } from "../hub/client.ts";
import { globToRegExp } from "../hub/paths.ts";
import { BuildDb, sqlString } from "../util/duckdb.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import type { LoadedTask } from "./load.ts";
import type { Value } from "./template.ts";

export type Row = Record<string, Value>;

/** What a task read, exactly: recorded in eval.lock.json and results.json, replayed by --locked. */
export interface TaskLock {
  task: string;
  task_sha256: string;
  repo: string;
  revision: string;
  commit: string;
  files: { path: string; size: number; sha256: string }[];
}

export interface SubsetData {
  /** "" for a task without subsets. */
  name: string;
  label: string;
  rows: Row[];
  fewshot: Row[];
}

export interface TaskData {
  lock: TaskLock;
  subsets: SubsetData[];
  /** Subsets the task names that this revision of the dataset does not hold. */
  missing: string[];
}

interface CardConfig {
  config_name: string;
  data_files?: string | string[] | { split: string; path: string | string[] }[];
}

/** The card's `configs:` entries (YAML front matter of README.md), as the datasets library reads them. */
async function cardConfigs(
  client: HubClient,
  repo: RepoRef,
  commit: string,
  listing: RemoteFile[],
  expected: Map<string, string> | undefined,
  used: Map<string, { path: string; size: number; sha256: string }>,
): Promise<CardConfig[]> {
  const entry = listing.find((f) => f.path === "README.md");
  if (!entry) return [];
  const got = await client.download(repo, commit, entry, expected?.get("README.md"));
  used.set("README.md", { path: "README.md", size: got.size, sha256: got.sha256 });
  const text = await readFile(got.localPath, "utf8");
  const m = text.match(/^---\r?\n([\s\S]*?)\r?\n---/);
  if (!m) return [];
  const front = parseYaml(m[1]!) as { configs?: CardConfig[] } | null;
  return Array.isArray(front?.configs) ? front.configs : [];
}

function splitGlobs(config: CardConfig, split: string): string[] | undefined {
  const df = config.data_files;
  if (df === undefined) return undefined;
  if (typeof df === "string" || (Array.isArray(df) && df.every((d) => typeof d === "string"))) {
    return split === "train" ? ([] as string[]).concat(df as string | string[]) : undefined;
  }
  const found = (df as { split: string; path: string | string[] }[]).find((d) => d.split === split);
  return found ? ([] as string[]).concat(found.path) : undefined;
}

function normalize(v: unknown): Value {
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return (v ?? null) as Value;
}

async function readJsonLines(path: string, where: string): Promise<Row[]> {
  let stream: NodeJS.ReadableStream = createReadStream(path);
  if (/\.gz$/i.test(path)) stream = stream.pipe(createGunzip());
  const rows: Row[] = [];
  let line = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    line++;
    if (text.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new RuntimeFailure(`${where}: line ${line} is not JSON; a benchmark row cannot be skipped, so the file is refused`);
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new RuntimeFailure(`${where}: line ${line} is not a JSON object`);
    rows.push(normalize(value) as Row);
  }
  return rows;
}

async function readRows(db: BuildDb, localPath: string, where: string): Promise<Row[]> {
  if (/\.parquet$/i.test(where)) {
    try {
      return (await db.rows(`SELECT * EXCLUDE (file_row_number) FROM read_parquet(${sqlString(localPath)}, file_row_number = true) ORDER BY file_row_number`)).map(
        (r) => normalize(r) as Row,
      );
    } catch (error) {
      throw new RuntimeFailure(`${where}: cannot be read as parquet (${(error as Error).message.split("\n")[0]})`);
    }
  }
  if (/\.(jsonl|json)(\.gz)?$/i.test(where)) return readJsonLines(localPath, where);
  throw new UsageError(`${where}: not a parquet or JSON-lines file; point the task's data_files at one`);
}

/** Resolves, downloads and reads a task's evaluation and few-shot rows for every subset. */
export async function loadTaskData(client: HubClient, task: LoadedTask, locked: TaskLock | undefined, onFile?: (path: string) => void): Promise<TaskData> {
  const { spec, templates } = task;
  const repo: RepoRef = { type: "dataset", id: spec.dataset.repo };
  const at = `${spec.task}: ${spec.dataset.repo}`;
  if (locked && (locked.repo !== spec.dataset.repo || locked.task_sha256 !== task.sha256)) {
    throw new UsageError(`${at}: the lock was written for ${locked.repo === spec.dataset.repo ? "another version of this task file" : locked.repo}; run without --locked to refresh it`);
  }
  const commit = locked?.commit ?? (await client.resolveRevision(repo, spec.dataset.revision));
  const expected = locked ? new Map(locked.files.map((f) => [f.path, f.sha256])) : undefined;
  const listing = locked ? locked.files.map((f) => ({ path: f.path, size: f.size, lfsSha256: undefined, gitOid: undefined })) : await client.listFiles(repo, commit);
  const used = new Map<string, { path: string; size: number; sha256: string }>();
  const configs = templates.dataConfig ? await cardConfigs(client, repo, commit, listing, expected, used) : [];
  const db = await BuildDb.open(":memory:", 1);
  try {
    const filesFor = (vars: Row, split: string): RemoteFile[] | undefined => {
      let globs: string[] | undefined;
      if (spec.dataset.data_files) {
        const t = templates.dataFiles.find(([s]) => s === split)?.[1];
        globs = t ? [String(t.render(vars))] : undefined;
      } else {
        const name = String(templates.dataConfig!.render(vars));
        const config = configs.find((c) => c.config_name === name);
        if (!config) return undefined;
        globs = splitGlobs(config, split);
      }
      if (!globs) return undefined;
      const regexes = globs.map(globToRegExp);
      const files = listing.filter((f) => regexes.some((r) => r.test(f.path)));
      return files.length ? files : undefined;
    };
    const read = async (files: RemoteFile[]): Promise<Row[]> => {
      const rows: Row[] = [];
      for (const f of files) {
        onFile?.(f.path);
        const got = await client.download(repo, commit, f, expected?.get(f.path));
        used.set(f.path, { path: f.path, size: got.size, sha256: got.sha256 });
        rows.push(...(await readRows(db, got.localPath, `${spec.dataset.repo}@${commit.slice(0, 12)}: ${f.path}`)));
      }
      return rows;
    };
    const subsetNames = spec.subsets ? Object.entries(spec.subsets) : [["", ""] as [string, string]];
    const subsets: SubsetData[] = [];
    const missing: string[] = [];
    for (const [name, label] of subsetNames) {
      const vars: Row = { subset: name, subset_label: label };
      const evalFiles = filesFor(vars, spec.dataset.split);
      const shotFiles = spec.num_fewshot > 0 && spec.dataset.fewshot_split ? filesFor(vars, spec.dataset.fewshot_split) : [];
      if (!evalFiles || !shotFiles) {
        const what = spec.dataset.data_files ? `data_files for split '${!evalFiles ? spec.dataset.split : spec.dataset.fewshot_split}'` : `config '${String(templates.dataConfig!.render(vars))}' with split '${!evalFiles ? spec.dataset.split : spec.dataset.fewshot_split}'`;
        if (spec.subsets) {
          missing.push(name);
          continue;
        }
        const sample = configs.length ? ` (its card's configs: ${configs.map((c) => c.config_name).slice(0, 10).join(", ")})` : ` (it has: ${listing.slice(0, 8).map((f) => f.path).join(", ")})`;
        throw new RuntimeFailure(`${at}@${commit.slice(0, 12)}: no files for ${what}${sample}; check the task's dataset section`);
      }
      subsets.push({ name, label, rows: await read(evalFiles), fewshot: shotFiles.length ? await read(shotFiles) : [] });
    }
    if (subsets.length === 0) throw new RuntimeFailure(`${at}@${commit.slice(0, 12)} holds none of the task's ${subsetNames.length} subsets; check the repo and revision`);
    const files = [...used.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
    return { lock: { task: spec.task, task_sha256: task.sha256, repo: spec.dataset.repo, revision: spec.dataset.revision, commit, files }, subsets, missing };
  } finally {
    db.close();
  }
}
