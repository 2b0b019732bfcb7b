import type { Recipe } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { DOCUMENTS } from "../schema.ts";

/**
 * Why a row is not a document; every reason is counted per source in the manifest. Readers give the first
 * six (a row that cannot be text); the filters below and decontaminate.ts give the rest. A new filter adds its reasons here and a
 * pass below, and the manifest, MIXTURE.md and messages count them with no other change.
 */
export const SKIP_REASONS = [
  "null_text",
  "empty_text",
  "invalid_utf8",
  "malformed_json",
  "text_not_string",
  "blank_line",
  "too_short",
  "too_long",
  "too_few_tokens",
  "too_many_tokens",
  "contaminated",
] as const;

export type SkipReason = (typeof SKIP_REASONS)[number];

/** Text filters, on every row still a document after reading: blank text, then the recipe's character bounds. */
export async function filterText(db: BuildDb, filters: Recipe["filters"]): Promise<void> {
  // Whitespace here is RE2's \s plus Unicode separators (\p{Z}) and the BOM.
  const { min_chars, max_chars } = filters;
  await db.run(
    `UPDATE ${DOCUMENTS} SET skip_reason = CASE
       WHEN regexp_full_match(text, '[\\s\\p{Z}\\x{FEFF}]*') THEN 'empty_text'
       WHEN length(text) < ${min_chars} THEN 'too_short'
       ${max_chars !== undefined ? `WHEN length(text) > ${max_chars} THEN 'too_long'` : ""}
     END WHERE skip_reason IS NULL`,
  );
}

/** The token-count filter, after tokenisation: an SQL expression over a `tokens` column (specials not counted) that
 * is a document's reason, or NULL when it is kept. */
export function tokenFilterSql(filters: Recipe["filters"]): string {
  const { min_tokens, max_tokens } = filters;
  return `CASE WHEN tokens < ${min_tokens} THEN 'too_few_tokens' ${max_tokens !== undefined ? `WHEN tokens > ${max_tokens} THEN 'too_many_tokens' ` : ""}END`;
}
