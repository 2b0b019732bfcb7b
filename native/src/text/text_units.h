#pragma once
/* What the quality filters measure a text in (quality.cpp): code points, lines, paragraphs and words, with the
 * same definitions for every rule. Lengths are in code points, as Python's len() (datatrove's filters) counts. */
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <string>
#include <vector>

#include "unicode_classes.h"

namespace cx::text {

/* ASCII's classes, looked up directly: most text is mostly ASCII. */
struct AsciiClasses {
  CharClass cls[128];
  constexpr AsciiClasses() : cls{} {
    for (const ClassRange& r : CLASS_RANGES)
      for (uint32_t c = r.first; c <= r.last && c < 128; c++) cls[c] = r.cls;
  }
};
inline constexpr AsciiClasses ASCII_CLASSES{};

inline CharClass char_class(uint32_t cp) {
  if (cp < 128) return ASCII_CLASSES.cls[cp];
  size_t lo = 0, hi = sizeof CLASS_RANGES / sizeof CLASS_RANGES[0];
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (CLASS_RANGES[mid].last < cp) lo = mid + 1;
    else hi = mid;
  }
  return lo < sizeof CLASS_RANGES / sizeof CLASS_RANGES[0] && CLASS_RANGES[lo].first <= cp ? CLASS_RANGES[lo].cls : OTHER;
}

/* Han (with extensions and compatibility ideographs), kana and Hangul syllables: each such character is a word
 * (the same ranges as src/pipeline/stages/near-dedup-text.ts). */
inline bool is_cjk(uint32_t cp) {
  if (cp < 0x3040) return false;  // most text: one comparison
  return (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x3040 && cp <= 0x30ff) ||
         (cp >= 0xac00 && cp <= 0xd7af) || (cp >= 0x20000 && cp <= 0x2fa1f);
}

/* The code point at s[i] (i < n) into *cp, and the index after it; a malformed byte becomes U+FFFD and is
 * skipped alone (the readers refuse such rows before this runs). */
inline size_t decode_one(const unsigned char* s, size_t n, size_t i, uint32_t* cp) {
  const unsigned char c = s[i];
  if (c < 0x80) {
    *cp = c;
    return i + 1;
  }
  const int len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > n) {
    *cp = 0xfffd;
    return i + 1;
  }
  uint32_t v = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  bool ok = true;
  for (int k = 1; k < len; k++) {
    if ((s[i + k] & 0xc0) != 0x80) ok = false;
    v = (v << 6) | (s[i + k] & 0x3f);
  }
  *cp = ok ? v : 0xfffd;
  return ok ? i + len : i + 1;
}

/* What every rule asks of a code point, found once as the text is decoded so no later pass classifies it again:
 * its class (the low bits), and whether it is a word of its own (a CJK character that is not punctuation or a
 * symbol) or a character of a run word (a letter, mark, number or '_' that is not such a CJK word), and whether
 * str.splitlines() breaks a line at it. */
enum : uint8_t { CLASS_BITS = 7, CJK_WORD = 8, RUN_CHAR = 16, LINE_BREAK = 32 };

constexpr bool is_line_break(uint32_t c) {
  return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028 || c == 0x2029;
}

constexpr uint8_t info_of(uint32_t cp, CharClass k, bool cjk) {
  const uint8_t brk = is_line_break(cp) ? LINE_BREAK : 0;
  if (cjk && k != PUNCT && k != SYMBOL) return (uint8_t)(k | CJK_WORD | brk);  // U+30FB, the katakana middle dot, is punctuation
  if (k == LETTER || k == MARK || k == NUMBER || cp == '_') return (uint8_t)(k | RUN_CHAR | brk);
  return (uint8_t)(k | brk);
}

struct AsciiInfo {
  uint8_t info[128];
  constexpr AsciiInfo() : info{} {
    for (uint32_t c = 0; c < 128; c++) info[c] = info_of(c, ASCII_CLASSES.cls[c], false);
  }
};
inline constexpr AsciiInfo ASCII_INFO{};

inline uint8_t char_info(uint32_t cp) { return cp < 128 ? ASCII_INFO.info[cp] : info_of(cp, char_class(cp), is_cjk(cp)); }

/* UTF-8 to code points (decode_one's rules) and each one's char_info, into vectors whose memory is reused. */
inline void decode_utf8(const unsigned char* s, size_t n, std::vector<uint32_t>& out, std::vector<uint8_t>& info) {
  out.resize(n), info.resize(n);  // at most one code point a byte
  uint32_t* o = out.data();
  uint8_t* f = info.data();
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    if (s[i] < 0x80) {
      o[k] = s[i], f[k] = ASCII_INFO.info[s[i]], k++, i++;
      continue;
    }
    uint32_t cp;
    i = decode_one(s, n, i, &cp);
    o[k] = cp, f[k] = char_info(cp), k++;
  }
  out.resize(k), info.resize(k);
}

/* A span [begin, end) of the text's code points. */
struct Span {
  size_t begin, end;
  size_t size() const { return end - begin; }
};

/* Python's str.splitlines() (is_line_break, with \r\n one break); no empty line after a final break. Into `lines`,
 * whose memory is reused. */
inline void split_lines(const std::vector<uint32_t>& t, const std::vector<uint8_t>& info, std::vector<Span>& lines) {
  lines.clear();
  size_t start = 0;
  for (size_t i = 0; i < t.size(); i++) {
    if (!(info[i] & LINE_BREAK)) continue;
    const uint32_t c = t[i];
    lines.push_back({start, i});
    if (c == '\r' && i + 1 < t.size() && t[i + 1] == '\n') i++;
    start = i + 1;
  }
  if (start < t.size()) lines.push_back({start, t.size()});
}

/* str.split("\n"): every piece, the empty one after a final newline included. Into `lines`, whose memory is reused. */
inline void split_newlines(const std::vector<uint32_t>& t, std::vector<Span>& lines) {
  lines.clear();
  size_t start = 0;
  for (size_t i = 0; i < t.size(); i++)
    if (t[i] == '\n') lines.push_back({start, i}), start = i + 1;
  lines.push_back({start, t.size()});
}

inline bool is_space(uint32_t c) { return char_class(c) == SPACE; }

inline Span strip(const std::vector<uint32_t>& t, Span s) {
  while (s.begin < s.end && is_space(t[s.begin])) s.begin++;
  while (s.end > s.begin && is_space(t[s.end - 1])) s.end--;
  return s;
}

/* A word: a run of letters, marks, numbers and '_' (or one CJK character); `alpha` when it holds a letter. */
struct Word {
  Span span;
  bool alpha, cjk;
  uint64_t hash;
};

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* The 128-bit product of a and b folded to 64 bits (wyhash's mum). */
inline uint64_t fold_multiply(uint64_t a, uint64_t b) {
  const __uint128_t p = (__uint128_t)a * b;
  return (uint64_t)p ^ (uint64_t)(p >> 64);
}

/* A span's 64-bit hash, only ever compared with others of the same text: four code points a multiply (one
 * dependent multiply a character made line and paragraph hashing the filters' largest cost), the tail by FNV-1a,
 * finished by mix64. The right operand is never 0: code points are under 2^21, the constant's top bits are set. */
inline uint64_t span_hash(const std::vector<uint32_t>& t, Span s) {
  const uint32_t* p = t.data() + s.begin;
  const size_t n = s.size();
  uint64_t h = 0xcbf29ce484222325ULL ^ n;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint64_t a = p[i] | (uint64_t)p[i + 1] << 32, b = p[i + 2] | (uint64_t)p[i + 3] << 32;
    h = fold_multiply(h ^ a ^ 0xa0761d6478bd642fULL, b ^ 0xe7037ed1a0b428dbULL);
  }
  for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return mix64(h);
}

/* Words and the count of other non-space characters (punctuation and symbols, each a token of its own as nltk's
 * word_tokenize makes them), from decode_utf8's info. */
inline void split_words(const std::vector<uint32_t>& t, const std::vector<uint8_t>& info, Span within, std::vector<Word>& words, size_t* other_tokens) {
  size_t others = 0;
  for (size_t i = within.begin; i < within.end;) {
    const uint8_t f = info[i];
    if (f & CJK_WORD) {
      words.push_back({{i, i + 1}, true, true, mix64(t[i])});
      i++;
      continue;
    }
    if (f & RUN_CHAR) {
      Word w{{i, i}, false, false, 0};
      for (; i < within.end && (info[i] & RUN_CHAR); i++) w.alpha = w.alpha || (info[i] & CLASS_BITS) == LETTER;
      w.span.end = i;
      w.hash = span_hash(t, w.span);
      words.push_back(w);
      continue;
    }
    if ((f & CLASS_BITS) != SPACE) others++;
    i++;
  }
  if (other_tokens) *other_tokens += others;
}

/* An open-addressing table of 64-bit hashes (0 stands for empty, so 0 is stored as 1) with each one's count and
 * first position, reused document after document without allocating: the repetition rules add every line,
 * paragraph and n-gram. */
class HashCounts {
 public:
  void reset(size_t expected) {
    size_t cap = 16;
    while (cap < 2 * expected + 2) cap <<= 1;
    // Only the first `cap` slots are used, so a small text after a large one neither clears nor reallocates the
    // large table (freeing and mapping it again cost the kernel a page clear a page).
    if (keys_.size() < cap) keys_.resize(cap), counts_.resize(cap), firsts_.resize(cap);
    std::fill(keys_.begin(), keys_.begin() + cap, 0);
    mask_ = cap - 1;
  }
  /* Adds one occurrence of h, first seen at `pos`; returns its slot. */
  size_t add(uint64_t h, uint32_t pos = 0) {
    if (h == 0) h = 1;
    size_t i = (size_t)(h * 0x9e3779b97f4a7c15ULL >> 20) & mask_;
    while (keys_[i] != 0 && keys_[i] != h) i = (i + 1) & mask_;
    if (keys_[i] == 0) keys_[i] = h, counts_[i] = 0, firsts_[i] = pos;
    counts_[i]++;
    return i;
  }
  uint32_t count(size_t slot) const { return counts_[slot]; }
  uint32_t first(size_t slot) const { return firsts_[slot]; }

 private:
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> counts_, firsts_;
  size_t mask_ = 0;
};

}  // namespace cx::text
