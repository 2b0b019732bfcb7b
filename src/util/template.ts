import { UsageError } from "./errors.ts";

export type TemplatePart = { literal: string } | { field: string };

/** Parses "{question}\n{answer}"; `{{` and `}}` stand for literal braces. */
export function parseTemplate(template: string, where: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let literal = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if ((c === "{" || c === "}") && template[i + 1] === c) {
      literal += c;
      i++;
    } else if (c === "{") {
      const end = template.indexOf("}", i);
      const field = end < 0 ? "" : template.slice(i + 1, end);
      if (!field) throw new UsageError(`${where}: unclosed or empty '{' at character ${i + 1} of ${JSON.stringify(template)}; write '{{' for a literal brace`);
      if (literal) parts.push({ literal });
      literal = "";
      parts.push({ field });
      i = end;
    } else if (c === "}") {
      throw new UsageError(`${where}: stray '}' at character ${i + 1} of ${JSON.stringify(template)}; write '}}' for a literal brace`);
    } else literal += c;
  }
  if (literal) parts.push({ literal });
  return parts;
}

export function templateFields(parts: readonly TemplatePart[]): string[] {
  return parts.flatMap((p) => ("field" in p ? [p.field] : []));
}
