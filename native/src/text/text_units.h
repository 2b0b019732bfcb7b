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

/* UTF-8 to code points (decode_one's rules). */
inline void decode_utf8(const unsigned char* s, size_t n, std::vector<uint32_t>& out) {
  out.clear();
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i = decode_one(s, n, i, &cp);
    out.push_back(cp);
  }
}

/* A span [begin, end) of the text's code points. */
struct Span {
  size_t begin, end;
  size_t size() const { return end - begin; }
};

/* Python's str.splitlines(): \n, \r, \r\n, \v, \f, \x1c–\x1e, \x85, U+2028, U+2029; no empty line after a final break.
 * Into `lines`, whose memory is reused. */
inline void split_lines(const std::vector<uint32_t>& t, std::vector<Span>& lines) {
  lines.clear();
  size_t start = 0;
  for (size_t i = 0; i < t.size(); i++) {
    const uint32_t c = t[i];
    const bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    lines.push_back({start, i});
    if (c == '\r' && i + 1 < t.size() && t[i + 1] == '\n') i++;
    start = i + 1;
  }
  if (start < t.size()) lines.push_back({start, t.size()});
}

/* str.split("\n"): every piece, the empty one after a final newline included. */
inline std::vector<Span> split_newlines(const std::vector<uint32_t>& t) {
  std::vector<Span> lines;
  size_t start = 0;
  for (size_t i = 0; i < t.size(); i++)
    if (t[i] == '\n') lines.push_back({start, i}), start = i + 1;
  lines.push_back({start, t.size()});
  return lines;
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

/* A span's 64-bit hash: FNV-1a over its code points (one multiply a character), finished by mix64. */
inline uint64_t span_hash(const std::vector<uint32_t>& t, Span s) {
  uint64_t h = 0xcbf29ce484222325ULL ^ s.size();
  for (size_t i = s.begin; i < s.end; i++) h = (h ^ t[i]) * 0x100000001b3ULL;
  return mix64(h);
}

/* Words and the count of other non-space characters (punctuation and symbols, each a token of its own as nltk's
 * word_tokenize makes them). */
inline void split_words(const std::vector<uint32_t>& t, Span within, std::vector<Word>& words, size_t* other_tokens) {
  size_t others = 0;
  for (size_t i = within.begin; i < within.end;) {
    const uint32_t c = t[i];
    const CharClass k = char_class(c);
    if (is_cjk(c) && k != PUNCT && k != SYMBOL) {  // U+30FB, the katakana middle dot, is punctuation
      words.push_back({{i, i + 1}, true, true, mix64(c)});
      i++;
      continue;
    }
    if (k == LETTER || k == MARK || k == NUMBER || c == '_') {
      Word w{{i, i}, false, false, 0};
      while (i < within.end) {
        const CharClass ki = char_class(t[i]);
        if (is_cjk(t[i]) && ki != PUNCT && ki != SYMBOL) break;
        if (!(ki == LETTER || ki == MARK || ki == NUMBER || t[i] == '_')) break;
        w.alpha = w.alpha || ki == LETTER;
        i++;
      }
      w.span.end = i;
      w.hash = span_hash(t, w.span);
      words.push_back(w);
      continue;
    }
    if (k != SPACE) others++;
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
    if (keys_.size() < cap || keys_.size() > 8 * cap) keys_.assign(cap, 0), counts_.assign(cap, 0), firsts_.assign(cap, 0);
    else std::fill(keys_.begin(), keys_.end(), 0);
    mask_ = keys_.size() - 1;
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
