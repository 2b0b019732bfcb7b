/**
 * The quality filters' presets, their thresholds and their rules, declared once: the recipe schema, the README's
 * table and the addon's parameter array (in this order: native/include/chuxin.h's CX_QUALITY_PARAMS, checked
 * equal by test/native/binding.test.ts) all come from here. Every default is datatrove's
 * (src/datatrove/pipeline/filters/: gopher_quality_filter.py, gopher_repetition_filter.py, c4_filters.py,
 * fineweb_quality_filter.py), which take Gopher's from Rae et al. 2021 (table A1) and C4's from Raffel et al. 2020.
 */
export const QUALITY_PRESETS = ["gopher_quality", "gopher_repetition", "c4", "fineweb"] as const;
export type QualityPreset = (typeof QUALITY_PRESETS)[number];
/** Each preset's bit in the addon's per-text mask (CX_GOPHER_QUALITY, ...). */
export const QUALITY_PRESET_BITS: Record<QualityPreset, number> = { gopher_quality: 1, gopher_repetition: 2, c4: 4, fineweb: 8 };

export interface QualityParam {
  preset: QualityPreset;
  name: string;
  default: number;
  integer?: boolean;
  describe: string;
}

const p = (preset: QualityPreset, name: string, dflt: number, describe: string, integer = false): QualityParam => ({ preset, name, default: dflt, describe, integer });

export const QUALITY_PARAMS: readonly QualityParam[] = [
  p("gopher_quality", "min_doc_words", 50, "fewer words fails (short_doc)", true),
  p("gopher_quality", "max_doc_words", 100_000, "more words fails (long_doc)", true),
  p("gopher_quality", "min_avg_word_length", 3, "a shorter mean word length in characters fails (not for mostly-CJK text)"),
  p("gopher_quality", "max_avg_word_length", 10, "a longer mean word length fails (not for mostly-CJK text)"),
  p("gopher_quality", "max_symbol_word_ratio", 0.1, "more '#', or more '...' and '…', per word fails"),
  p("gopher_quality", "max_bullet_lines_ratio", 0.9, "a larger share of lines starting with '•' fails"),
  p("gopher_quality", "max_ellipsis_lines_ratio", 0.3, "a larger share of lines ending in '...' or '…' fails"),
  p("gopher_quality", "min_alpha_words_ratio", 0.8, "a smaller share of words holding a letter fails (datatrove's max_non_alpha_words_ratio)"),
  p("gopher_quality", "min_stop_words", 2, "fewer of the, be, to, of, and, that, have, with fails (not for mostly-CJK text)", true),
  p("gopher_repetition", "dup_para_frac", 0.3, "a larger share of paragraphs (split at blank lines) repeating an earlier one fails"),
  p("gopher_repetition", "dup_para_char_frac", 0.2, "a larger share of characters in repeated paragraphs fails"),
  p("gopher_repetition", "dup_line_frac", 0.3, "a larger share of repeated lines fails"),
  p("gopher_repetition", "dup_line_char_frac", 0.2, "a larger share of characters in repeated lines fails"),
  p("gopher_repetition", "top_2_gram", 0.2, "a larger share of characters in the most frequent word 2-gram fails"),
  p("gopher_repetition", "top_3_gram", 0.18, "the same for 3-grams"),
  p("gopher_repetition", "top_4_gram", 0.16, "the same for 4-grams"),
  p("gopher_repetition", "duplicated_5_n_grams", 0.15, "a larger share of characters in repeated word 5-grams fails"),
  p("gopher_repetition", "duplicated_6_n_grams", 0.14, "the same for 6-grams"),
  p("gopher_repetition", "duplicated_7_n_grams", 0.13, "the same for 7-grams"),
  p("gopher_repetition", "duplicated_8_n_grams", 0.12, "the same for 8-grams"),
  p("gopher_repetition", "duplicated_9_n_grams", 0.11, "the same for 9-grams"),
  p("gopher_repetition", "duplicated_10_n_grams", 0.1, "the same for 10-grams"),
  p("c4", "min_num_sentences", 5, "fewer sentences on the lines C4 keeps fails (too_few_sentences)", true),
  p("c4", "min_words_per_line", 3, "a line with fewer words is not kept", true),
  p("c4", "max_word_length", 1000, "a line with a longer word is not kept", true),
  p("fineweb", "line_punct_thr", 0.12, "this share or less of lines ending in . ' \" ! ? (or 。！？) fails (line_punct_ratio)"),
  p("fineweb", "short_line_thr", 0.67, "this share or more of short lines fails (short_line_ratio)"),
  p("fineweb", "short_line_length", 30, "a line of at most this many characters is short", true),
  p("fineweb", "char_duplicates_ratio", 0.01, "this share or more of characters in repeated lines fails (char_dup_ratio)"),
  p("fineweb", "new_line_ratio", 0.3, "more newlines per word fails (list_ratio)"),
];

/** Every rule, in the order they run (the first failing one is a document's skip reason, `preset.rule`). */
export const QUALITY_RULES: readonly [QualityPreset, string][] = [
  ...(["short_doc", "long_doc", "below_avg_word_length", "above_avg_word_length", "too_many_hashes", "too_many_ellipsis", "too_many_bullets", "too_many_end_ellipsis", "below_alpha_words", "not_enough_stop_words"] as const).map(
    (r) => ["gopher_quality", r] as [QualityPreset, string],
  ),
  ...(["dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac", "top_2_gram", "top_3_gram", "top_4_gram", ...[5, 6, 7, 8, 9, 10].map((n) => `duplicated_${n}_n_grams`)] as const).map(
    (r) => ["gopher_repetition", r] as [QualityPreset, string],
  ),
  ...(["lorem_ipsum", "curly_bracket", "too_few_sentences"] as const).map((r) => ["c4", r] as [QualityPreset, string]),
  ...(["line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio"] as const).map((r) => ["fineweb", r] as [QualityPreset, string]),
];

/** A rule's skip reason, as the manifest counts it. */
export const qualityReason = ([preset, rule]: readonly [QualityPreset, string]) => `${preset}.${rule}`;
