import { isAbsolute, relative } from "node:path";
import { RuntimeFailure } from "../util/errors.ts";

export const COMMIT_SHA = /^[0-9a-f]{40}$/;
/** git blob ids: sha1 (40 hex) or, in sha256 repositories, 64 hex. */
export const GIT_OID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Refuses a path that would land outside `root` once joined, whatever built it. */
export function assertInside(root: string, path: string, what: string): void {
  const rel = relative(root, path);
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) {
    throw new RuntimeFailure(`${what}: refusing a path outside ${root} (${path})`);
  }
}

/**
 * Paths from a remote listing are untrusted: they are joined onto local folders, so anything that could
 * escape (absolute, `..`, backslashes, empty or dot segments, control characters) is refused.
 */
export function assertSafeRelativePath(path: string, where: string): void {
  const bad =
    path.length === 0 ||
    path.startsWith("/") ||
    /^[A-Za-z]:/.test(path) ||
    path.includes("\\") ||
    /[\u0000-\u001f]/.test(path) ||
    path.split("/").some((segment) => segment === "" || segment === "." || segment === "..");
  if (bad) throw new RuntimeFailure(`${where}: refusing unsafe file path ${JSON.stringify(path)} from the listing`);
}

/** Glob → RegExp: `*` and `?` stay inside one path segment, `**` crosses segments, `{a,b}` alternates. */
export function globToRegExp(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        i++;
        if (glob[i + 1] === "/") {
          i++;
          out += "(?:.*/)?";
        } else out += ".*";
      } else out += "[^/]*";
    } else if (c === "?") out += "[^/]";
    else if (c === "{") {
      const end = glob.indexOf("}", i);
      if (end < 0) out += "\\{";
      else {
        out += "(?:" + glob.slice(i + 1, end).split(",").map(escapeRegExp).join("|") + ")";
        i = end;
      }
    } else out += escapeRegExp(c);
  }
  return new RegExp(`^${out}$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
