/* Quality filters (include/chuxin.h, cx_quality_check): datatrove's Gopher quality, Gopher repetition, C4 and
 * FineWeb rules with their thresholds, over the units of text_units.h. Where this differs from datatrove, on purpose:
 *   - words are runs of letters, marks, numbers and '_' (nltk's word_tokenize is English-only), and each CJK
 *     character is a word;
 *   - Gopher quality's mean word length and stop words apply only when most words are not CJK (a Chinese text has
 *     one-character words and no English stop words);
 *   - Gopher repetition's duplicated n-grams are counted over words, as the Gopher paper defines them (datatrove
 *     joins n consecutive n-grams);
 *   - C4 only judges documents (lorem ipsum, a curly bracket, fewer than 5 sentences on its kept lines): the build
 *     never rewrites a document, so the lines C4 would drop stay; terminal punctuation includes CJK 。！？ and
 *     closing quotes.
 * The first failing rule, in CX_QUALITY_RULES order, is the text's reason. */
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../util/status.h"
#include "../util/threadpool.h"
#include "text_units.h"

namespace {

using namespace cx::text;

enum Param {
#define CX_PARAM_ENUM(preset, name, dflt) P_##preset##_##name,
  CX_QUALITY_PARAMS(CX_PARAM_ENUM)
#undef CX_PARAM_ENUM
      P_COUNT
};
enum Rule {
  PASS = 0,
#define CX_RULE_ENUM(preset, name) R_##preset##_##name,
  CX_QUALITY_RULES(CX_RULE_ENUM)
#undef CX_RULE_ENUM
};
const char* const PARAM_NAMES[] = {
#define CX_PARAM_NAME(preset, name, dflt) #preset "." #name,
    CX_QUALITY_PARAMS(CX_PARAM_NAME)
#undef CX_PARAM_NAME
};
const double PARAM_DEFAULTS[] = {
#define CX_PARAM_DEFAULT(preset, name, dflt) dflt,
    CX_QUALITY_PARAMS(CX_PARAM_DEFAULT)
#undef CX_PARAM_DEFAULT
};
const char* const RULE_NAMES[] = {
#define CX_RULE_NAME(preset, name) #preset "." #name,
    CX_QUALITY_RULES(CX_RULE_NAME)
#undef CX_RULE_NAME
};
constexpr int RULE_COUNT = sizeof RULE_NAMES / sizeof RULE_NAMES[0];

struct Doc {
  std::vector<uint32_t> t;
  std::vector<uint8_t> info;  // char_info of each code point
  std::vector<Span> lines;    // split_lines(t)
  std::vector<Word> words;
  size_t other_tokens = 0;
  HashCounts table;  // scratch for the repetition rules
  std::vector<uint64_t> hashes;
  std::vector<size_t> prefix;
  std::vector<Span> paragraphs, newline_pieces, non_empty;  // scratch, reused
};

/* Whether a span ends with an ASCII literal (its length known when compiled: no strlen a call). */
template <size_t N>
bool ends_with(const std::vector<uint32_t>& t, Span s, const char (&ascii)[N]) {
  constexpr size_t n = N - 1;
  if (s.size() < n) return false;
  for (size_t k = 0; k < n; k++)
    if (t[s.end - n + k] != (unsigned char)ascii[k]) return false;
  return true;
}

/* Whether the text at i starts with an ASCII needle of n characters (lower case), ignoring ASCII case. */
bool starts_with_ci(const std::vector<uint32_t>& t, size_t i, const char* needle, size_t n) {
  for (size_t k = 0; k < n; k++) {
    uint32_t c = t[i + k];
    if (c >= 'A' && c <= 'Z') c += 32;
    if (c != (unsigned char)needle[k]) return false;
  }
  return true;
}

constexpr uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Up to four ASCII characters as one number, a byte each, the first lowest. */
template <size_t N>
constexpr uint32_t pack_ascii(const char (&s)[N]) {
  static_assert(N <= 5, "four characters at most");
  uint32_t key = 0;
  for (size_t k = 0; k + 1 < N; k++) key |= (uint32_t)(unsigned char)s[k] << (8 * k);
  return key;
}

enum : unsigned { LOREM = 1, JAVASCRIPT = 2, CURLY = 4, POLICY = 8 };


/* Duplicated elements and their characters: each element after its first occurrence (datatrove's find_duplicates). */
std::pair<size_t, size_t> duplicates(const std::vector<uint32_t>& t, const std::vector<Span>& parts, HashCounts& table) {
  table.reset(parts.size());
  size_t elements = 0, chars = 0;
  for (const Span& p : parts)
    if (table.count(table.add(span_hash(t, p))) > 1) elements++, chars += p.size();
  return {elements, chars};
}

/* Every n-gram's hash for one n, from the (n - 1)-grams' (`hashes` holds them on entry: the words' hashes for
 * n = 1), so each n costs one mix a position. An n-gram's hash is the chain of its words' hashes. */
void next_ngram_hashes(const std::vector<Word>& w, size_t n, std::vector<uint64_t>& hashes) {
  if (n == 1) {
    hashes.resize(w.size());
    for (size_t i = 0; i < w.size(); i++) hashes[i] = mix64(0x2545f4914f6cdd1dULL ^ w[i].hash);
    return;
  }
  const size_t count = w.size() + 1 - n;
  for (size_t i = 0; i < count; i++) hashes[i] = mix64(hashes[i] ^ w[i + n - 1].hash);
  hashes.resize(count);
}

int gopher_quality(const Doc& d, const double* p) {
  const auto& w = d.words;
  const double n = (double)w.size();
  if (n < p[P_gopher_quality_min_doc_words]) return R_gopher_quality_short_doc;
  if (n > p[P_gopher_quality_max_doc_words]) return R_gopher_quality_long_doc;
  size_t latin = 0, latin_chars = 0, alpha = 0, stops = 0;
  // The stop words and a word of up to four ASCII characters as one number each, its characters a byte each
  // (lower case): one comparison a stop word.
  static constexpr uint32_t STOP[] = {pack_ascii("the"), pack_ascii("be"), pack_ascii("to"), pack_ascii("of"),
                                      pack_ascii("and"), pack_ascii("that"), pack_ascii("have"), pack_ascii("with")};
  const auto is_stop = [&](Span s) {
    uint32_t key = 0;
    for (size_t k = 0; k < s.size(); k++) {
      const uint32_t c = d.t[s.begin + k];
      if (c >= 128) return false;
      key |= ascii_lower(c) << (8 * k);
    }
    for (const uint32_t stop : STOP)
      if (key == stop) return true;
    return false;
  };
  for (const Word& x : w) {
    alpha += x.alpha;
    if (x.cjk) continue;
    latin++, latin_chars += x.span.size();
    if (x.span.size() <= 4 && is_stop(x.span)) stops++;
  }
  const bool mostly_latin = 2 * latin > w.size();
  if (mostly_latin) {
    const double mean = (double)latin_chars / (double)latin;
    if (mean < p[P_gopher_quality_min_avg_word_length]) return R_gopher_quality_below_avg_word_length;
    if (mean > p[P_gopher_quality_max_avg_word_length]) return R_gopher_quality_above_avg_word_length;
  }
  const double per_word = n > 0 ? n : 1;
  // '#', and ellipses: "..." without overlaps, as str.count finds them (a third of each run of dots), and U+2026.
  size_t hashes = 0, ellipses = 0, dots = 0;
  for (const uint32_t c : d.t) {
    if (c == '.') {
      dots++;
      continue;
    }
    ellipses += dots / 3, dots = 0;
    hashes += c == '#';
    ellipses += c == 0x2026;
  }
  ellipses += dots / 3;
  if ((double)hashes / per_word > p[P_gopher_quality_max_symbol_word_ratio]) return R_gopher_quality_too_many_hashes;
  if ((double)ellipses / per_word > p[P_gopher_quality_max_symbol_word_ratio]) return R_gopher_quality_too_many_ellipsis;
  const std::vector<Span>& lines = d.lines;
  if (!lines.empty()) {
    size_t bullets = 0, trailing = 0;
    for (const Span& l : lines) {
      const Span s = strip(d.t, l);
      if (s.size() > 0 && d.t[s.begin] == 0x2022) bullets++;
      if (ends_with(d.t, s, "...") || (s.size() > 0 && d.t[s.end - 1] == 0x2026)) trailing++;
    }
    if ((double)bullets / (double)lines.size() > p[P_gopher_quality_max_bullet_lines_ratio]) return R_gopher_quality_too_many_bullets;
    if ((double)trailing / (double)lines.size() > p[P_gopher_quality_max_ellipsis_lines_ratio]) return R_gopher_quality_too_many_end_ellipsis;
  }
  if (n > 0 && (double)alpha / n < p[P_gopher_quality_min_alpha_words_ratio]) return R_gopher_quality_below_alpha_words;
  if (mostly_latin && (double)stops < p[P_gopher_quality_min_stop_words]) return R_gopher_quality_not_enough_stop_words;
  return PASS;
}

int gopher_repetition(Doc& d, const double* p) {
  const double len = (double)d.t.size();
  if (len == 0) return PASS;
  // Paragraphs: the stripped text split at runs of two or more newlines.
  const Span all = strip(d.t, {0, d.t.size()});
  std::vector<Span>& paras = d.paragraphs;
  paras.clear();
  size_t start = all.begin;
  for (size_t i = all.begin; i < all.end; i++) {
    if (d.t[i] != '\n' || i + 1 >= all.end || d.t[i + 1] != '\n') continue;
    paras.push_back({start, i});
    while (i < all.end && d.t[i] == '\n') i++;
    start = i--;
  }
  paras.push_back({start, all.end});
  auto [para_dups, para_chars] = duplicates(d.t, paras, d.table);
  if ((double)para_dups / (double)paras.size() > p[P_gopher_repetition_dup_para_frac]) return R_gopher_repetition_dup_para_frac;
  if ((double)para_chars / len > p[P_gopher_repetition_dup_para_char_frac]) return R_gopher_repetition_dup_para_char_frac;
  const std::vector<Span>& lines = d.lines;
  auto [line_dups, line_chars] = duplicates(d.t, lines, d.table);
  if (!lines.empty() && (double)line_dups / (double)lines.size() > p[P_gopher_repetition_dup_line_frac]) return R_gopher_repetition_dup_line_frac;
  if ((double)line_chars / len > p[P_gopher_repetition_dup_line_char_frac]) return R_gopher_repetition_dup_line_char_frac;
  const auto& w = d.words;
  // The characters of the n-gram at i: its words' and the n - 1 spaces between them.
  d.prefix.assign(w.size() + 1, 0);
  for (size_t i = 0; i < w.size(); i++) d.prefix[i + 1] = d.prefix[i] + w[i].span.size();
  const auto chars = [&](size_t i, size_t n) { return d.prefix[i + n] - d.prefix[i] + n - 1; };
  next_ngram_hashes(w, 1, d.hashes);
  // Once every n-gram of a level occurs once, so does every longer one (a repeated n-gram repeats its prefix): the
  // most frequent is then the first, with a count of 1, and none repeats, with no hashing.
  bool distinct = false;
  for (size_t n = 2; n <= 10 && n <= w.size(); n++) {
    if (distinct) {
      if (n <= 4 && (double)chars(0, n) / len > p[P_gopher_repetition_top_2_gram + (n - 2)]) return R_gopher_repetition_top_2_gram + (int)(n - 2);
      if (n >= 5 && 0.0 > p[P_gopher_repetition_duplicated_5_n_grams + (n - 5)]) return R_gopher_repetition_duplicated_5_n_grams + (int)(n - 5);
      continue;
    }
    next_ngram_hashes(w, n, d.hashes);
    d.table.reset(d.hashes.size());
    if (n <= 4) {
      // The most frequent n-gram (the first seen among equals, as Counter.most_common keeps insertion order).
      size_t best = 0, best_pos = 0;
      for (size_t i = 0; i < d.hashes.size(); i++) {
        const size_t slot = d.table.add(d.hashes[i], (uint32_t)i);
        const size_t c = d.table.count(slot), first = d.table.first(slot);
        if (c > best || (c == best && first < best_pos)) best = c, best_pos = first;
      }
      if ((double)(best * chars(best_pos, n)) / len > p[P_gopher_repetition_top_2_gram + (n - 2)]) return R_gopher_repetition_top_2_gram + (int)(n - 2);
      distinct = best == 1;
    } else {
      // Repeated n-grams: a repeat's characters count once and the scan skips past it.
      size_t repeated = 0;
      for (size_t i = 0; i < d.hashes.size();) {
        if (d.table.count(d.table.add(d.hashes[i])) > 1) repeated += chars(i, n), i += n;
        else i++;
      }
      if ((double)repeated / len > p[P_gopher_repetition_duplicated_5_n_grams + (n - 5)]) return R_gopher_repetition_duplicated_5_n_grams + (int)(n - 5);
      distinct = repeated == 0;
    }
  }
  return PASS;
}

bool terminal(uint32_t c) { return c == '.' || c == '?' || c == '!' || c == '"' || c == '\'' || c == 0x3002 || c == 0xff01 || c == 0xff1f || c == 0x201d || c == 0x2019 || c == 0x300d || c == 0x300f; }

/* A line's end once trailing citations ([1], [edit], [citation needed]) are removed, as C4 removes them (no strip after). */
size_t end_without_citations(const std::vector<uint32_t>& t, Span line) {
  size_t end = line.end;
  for (;;) {
    if (end == line.begin || t[end - 1] != ']') return end;
    size_t open = end - 1;
    while (open > line.begin && t[open - 1] != '[') open--;
    if (open == line.begin) return end;
    const Span inside{open, end - 1};  // between the brackets
    bool digits = true;
    for (size_t i = inside.begin; i < inside.end; i++) digits = digits && t[i] >= '0' && t[i] <= '9';
    const auto is = [&](const char* w) {
      const size_t n = std::char_traits<char>::length(w);
      if (inside.size() != n) return false;
      for (size_t k = 0; k < n; k++)
        if (t[inside.begin + k] != (unsigned char)w[k]) return false;
      return true;
    };
    if (!(digits || is("edit") || is("citation needed"))) return end;
    end = open - 1;
  }
}

/* What C4 measures of a line, in one pass (each the same as its own pass would give): whether a whitespace-separated
 * word is longer than `max_word` code points, its words (as split_words counts them), the phrases C4 looks for
 * (lorem ipsum, javascript, the policy phrases, a curly bracket; ASCII case ignored), and the sentences up to `sentence_end`: runs of . ? ! ending at a space, a quote or that end, and runs of 。！？ anywhere. */
struct C4Line {
  bool long_word = false;
  size_t words = 0, sentences = 0;
  unsigned phrases = 0;
};

/* C4's phrases, and for each ASCII character (either case) the phrases whose first, and whose second, it is: a
 * phrase is compared only where both of its first two characters match, which in English prose is rare. */
struct Phrase {
  const char* text;
  size_t length;
  unsigned bit;
};
constexpr Phrase C4_PHRASES[] = {{"lorem ipsum", 11, LOREM},       {"javascript", 10, JAVASCRIPT},   {"terms of use", 12, POLICY},
                                 {"privacy policy", 14, POLICY},   {"cookie policy", 13, POLICY},    {"uses cookies", 12, POLICY},
                                 {"use of cookies", 14, POLICY},   {"use cookies", 11, POLICY}};
struct PhraseStarts {
  uint8_t first[128], second[128];  // bit i: C4_PHRASES[i]'s first (second) character is this one
  constexpr PhraseStarts() : first{}, second{} {
    for (size_t i = 0; i < sizeof C4_PHRASES / sizeof C4_PHRASES[0]; i++)
      for (int k = 0; k < 2; k++) {
        uint8_t* at = k == 0 ? first : second;
        const unsigned char c = (unsigned char)C4_PHRASES[i].text[k];
        at[c] |= (uint8_t)(1u << i);
        if (c >= 'a' && c <= 'z') at[c - 32] |= (uint8_t)(1u << i);
      }
  }
};
constexpr PhraseStarts PHRASE_STARTS{};

C4Line c4_line(const std::vector<uint32_t>& t, const std::vector<uint8_t>& info, Span line, size_t sentence_end, double max_word) {
  // run > max_word, for a whole run, is run > floor(max_word) (any run when it is negative).
  const size_t longest = max_word < 0 ? 0 : max_word >= 9e15 ? SIZE_MAX : (size_t)std::floor(max_word);
  auto stop = [](uint32_t c) { return c == '.' || c == '?' || c == '!' || c == 0x3002 || c == 0xff01 || c == 0xff1f; };
  C4Line r;
  size_t run = 0;  // code points of the whitespace-separated word so far
  bool in_word = false;
  for (size_t i = line.begin; i < line.end; i++) {
    const uint32_t c = t[i];
    const uint8_t f = info[i];
    // Long words: runs between whitespace.
    if ((f & CLASS_BITS) == SPACE) run = 0;
    else if (++run > longest) r.long_word = true;
    // Words as split_words counts them.
    if (f & CJK_WORD) {
      r.words++, in_word = false;
    } else {
      const bool word_char = f & RUN_CHAR;
      if (word_char && !in_word) r.words++;
      in_word = word_char;
    }
    // Phrases, starting here (ASCII case ignored).
    if (c == '{') {
      r.phrases |= CURLY;
    } else {
      // Indexed by the low 7 bits, so a non-ASCII character may select a phrase: the comparison then refuses it.
      const uint32_t next = i + 1 < line.end ? t[i + 1] : 0;
      for (unsigned starts = PHRASE_STARTS.first[c & 127] & PHRASE_STARTS.second[next & 127]; starts; starts &= starts - 1) {
        const Phrase& ph = C4_PHRASES[__builtin_ctz(starts)];
        if (!(r.phrases & ph.bit) && i + ph.length <= line.end && starts_with_ci(t, i, ph.text, ph.length)) r.phrases |= ph.bit;
      }
    }
    // Sentences, within [line.begin, sentence_end).
    if (i < sentence_end && stop(c) && !(i + 1 < sentence_end && stop(t[i + 1]))) {
      const uint32_t next = i + 1 < sentence_end ? t[i + 1] : ' ';
      if (c >= 0x3000 || is_space(next) || next == '"' || next == '\'') r.sentences++;
    }
  }
  return r;
}

int c4(Doc& d, const double* p) {
  size_t sentences = 0;
  for (const Span& raw : d.lines) {
    const Span line = strip(d.t, raw);
    // Kept lines end in terminal punctuation (after trailing citations, as C4 removes them), not in "...".
    const Span ended{line.begin, end_without_citations(d.t, line)};
    if (ended.size() == 0 || !terminal(d.t[ended.end - 1]) || ends_with(d.t, ended, "...")) continue;
    const C4Line l = c4_line(d.t, d.info, line, ended.end, p[P_c4_max_word_length]);
    if (l.long_word) continue;  // a line with a word longer than max_word_length is dropped
    if ((double)l.words < p[P_c4_min_words_per_line]) continue;
    if (l.phrases & LOREM) return R_c4_lorem_ipsum;
    if (l.phrases & JAVASCRIPT) continue;
    if (l.phrases & CURLY) return R_c4_curly_bracket;
    if (l.phrases & POLICY) continue;
    sentences += std::max<size_t>(l.sentences, 1);  // a kept line has at least one
  }
  if ((double)sentences < p[P_c4_min_num_sentences]) return R_c4_too_few_sentences;
  return PASS;
}

int fineweb(Doc& d, const double* p) {
  std::vector<Span>& lines = d.newline_pieces;
  split_newlines(d.t, lines);
  size_t punct = 0, short_lines = 0;
  std::vector<Span>& non_empty = d.non_empty;
  non_empty.clear();
  for (const Span& l : lines) {
    if (l.size() > 0 && terminal(d.t[l.end - 1])) punct++;
    if ((double)l.size() <= p[P_fineweb_short_line_length]) short_lines++;
    if (strip(d.t, l).size() > 0) non_empty.push_back(l);
  }
  const double n_lines = (double)lines.size();
  if ((double)punct / n_lines <= p[P_fineweb_line_punct_thr]) return R_fineweb_line_punct_ratio;
  if ((double)short_lines / n_lines >= p[P_fineweb_short_line_thr]) return R_fineweb_short_line_ratio;
  const size_t newlines = (size_t)std::count(d.t.begin(), d.t.end(), (uint32_t)'\n');
  const size_t chars = d.t.size() - newlines;
  if (chars > 0 && (double)duplicates(d.t, non_empty, d.table).second / (double)chars >= p[P_fineweb_char_duplicates_ratio]) return R_fineweb_char_dup_ratio;
  const size_t tokens = d.words.size() + d.other_tokens;
  if (tokens > 0 && (double)newlines / (double)tokens > p[P_fineweb_new_line_ratio]) return R_fineweb_list_ratio;
  return PASS;
}

int check(Doc& d, const double* p, uint8_t presets) {
  int r = PASS;
  if (presets & CX_GOPHER_QUALITY) r = gopher_quality(d, p);
  if (r == PASS && (presets & CX_GOPHER_REPETITION)) r = gopher_repetition(d, p);
  if (r == PASS && (presets & CX_C4)) r = c4(d, p);
  if (r == PASS && (presets & CX_FINEWEB)) r = fineweb(d, p);
  return r;
}

}  // namespace

int cx_quality_param_count(void) { return P_COUNT; }
const char* cx_quality_param_name(int i) { return i >= 0 && i < P_COUNT ? PARAM_NAMES[i] : nullptr; }
double cx_quality_param_default(int i) { return i >= 0 && i < P_COUNT ? PARAM_DEFAULTS[i] : 0; }
int cx_quality_rule_count(void) { return RULE_COUNT; }
const char* cx_quality_rule_name(int i) { return i >= 0 && i < RULE_COUNT ? RULE_NAMES[i] : nullptr; }

int cx_quality_check(const double* params, const char* const* texts, const size_t* lengths, const uint8_t* presets, size_t n_texts, int threads,
                     uint16_t* rule, cx_status* status) {
  return cx::guarded(status, [&] {
    if (!params) throw std::invalid_argument("params are required");
    if (n_texts && (!texts || !lengths || !presets || !rule)) throw std::invalid_argument("texts, lengths, presets and rule are required");
    cx::ThreadPool pool(std::max(1, threads));
    std::vector<Doc> docs(pool.size());
    pool.parallel_for((int64_t)n_texts, [&](int64_t i, int t) {
      Doc& d = docs[t];
      decode_utf8(reinterpret_cast<const unsigned char*>(texts[i]), lengths[i], d.t, d.info);
      d.words.clear();
      d.other_tokens = 0;
      split_words(d.t, d.info, {0, d.t.size()}, d.words, &d.other_tokens);
      split_lines(d.t, d.info, d.lines);
      rule[i] = (uint16_t)check(d, params, presets[i]);
    });
  });
}
