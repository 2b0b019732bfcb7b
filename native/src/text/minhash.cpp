/* MinHash LSH band keys and shingle Jaccard (include/chuxin.h, cx_minhash_bands, cx_shingle_jaccard). The caller
 * gives text in NFKC and lower case where it holds non-ASCII (JavaScript's ICU does both; ASCII needs neither, so most
 * text arrives untouched: src/pipeline/stages/near-dedup-text.ts). Here ASCII is lower-cased, and every Unicode
 * punctuation (P), symbol (S) or white space character separates words; each CJK character is a word of its own.
 * That is near-dedup-text.ts's shingleWords, character for character (test/pipeline/stages/near-dedup.test.ts).
 * A shingle is `ngram` consecutive words; its 64-bit hash chains the words' hashes, so no shingle string is built.
 * Each of bands × rows hash functions is a*h + b of the shingle hash h, a and b its own (a odd); a band's key mixes
 * its rows' minima with the band index. Every value depends only on the text and the spec: the same keys on any
 * machine and thread count. */
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "../util/status.h"
#include "../util/threadpool.h"
#include "text_units.h"

namespace {

using namespace cx::text;

struct Scratch {
  std::vector<uint64_t> words, shingles, minima, other;
};

/* Whether an ASCII character ends a word (space, punctuation or symbol), looked up directly. */
struct AsciiBreaks {
  bool brk[128];
  constexpr AsciiBreaks() : brk{} {
    for (uint32_t c = 0; c < 128; c++) {
      const CharClass k = ASCII_CLASSES.cls[c];
      brk[c] = k == SPACE || k == PUNCT || k == SYMBOL;
    }
  }
};
constexpr AsciiBreaks ASCII_BREAKS{};

/* The hashes of a text's words (see the file's comment), read straight from the UTF-8. */
void word_hashes(const char* text, size_t len, uint64_t seed, Scratch& s) {
  const unsigned char* u = reinterpret_cast<const unsigned char*>(text);
  s.words.clear();
  uint64_t h = 0;
  bool in_word = false;
  // A word's hash: FNV-1a over its code points from a seeded start, finished by mix64.
  const uint64_t start = mix64(seed ^ 0x9e3779b97f4a7c15ULL);
  const auto end_word = [&] {
    if (in_word) s.words.push_back(mix64(h));
    in_word = false;
  };
  for (size_t i = 0; i < len;) {
    uint32_t c = u[i];
    if (c < 0x80) {  // ASCII: no CJK here, and upper case folds by itself
      i++;
      if (ASCII_BREAKS.brk[c]) {
        end_word();
        continue;
      }
      if (c >= 'A' && c <= 'Z') c += 32;
    } else {
      i = decode_one(u, len, i, &c);
      // Punctuation first: a few characters in the CJK ranges are punctuation (U+30FB, the katakana middle dot).
      const CharClass k = char_class(c);
      if (k == SPACE || k == PUNCT || k == SYMBOL) {
        end_word();
        continue;
      }
      if (is_cjk(c)) {
        end_word();
        s.words.push_back(mix64((start ^ c) * 0x100000001b3ULL));
        continue;
      }
    }
    if (!in_word) h = start, in_word = true;
    h = (h ^ c) * 0x100000001b3ULL;
  }
  end_word();
}

/* The hashes of its `ngram`-word shingles; a text of fewer words is one shingle of them all. */
void shingle_hashes(const std::vector<uint64_t>& words, int ngram, uint64_t seed, std::vector<uint64_t>& out) {
  out.clear();
  if (words.empty()) return;
  const size_t n = std::min<size_t>((size_t)ngram, words.size());
  for (size_t s = 0; s + n <= words.size(); s++) {
    uint64_t h = seed;
    for (size_t k = 0; k < n; k++) h = mix64(h ^ words[s + k]);
    out.push_back(h);
  }
}

struct Spec {
  int ngram, bands, rows;
  uint64_t seed;
  std::vector<uint64_t> a, b;  // each hash function's multiplier (odd) and addend
};

/* m[f] = min over the shingles h of a[f]·h + b[f]: the hot loop of MinHash. Functions go in groups of 16 whose
 * minima stay in registers over every shingle; built for AVX-512 (64-bit multiply and unsigned min, 8 lanes) and
 * AVX2 besides the baseline, the best chosen at load time. Integer arithmetic: every build gives the same minima. */
__attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4"))) void shingle_minima(const uint64_t* shingles, size_t n, const uint64_t* a,
                                                                                const uint64_t* b, size_t functions, uint64_t* m) {
  constexpr size_t kGroup = 16;
  size_t f0 = 0;
  for (; f0 + kGroup <= functions; f0 += kGroup) {
    uint64_t ag[kGroup], bg[kGroup], mg[kGroup];
    for (size_t k = 0; k < kGroup; k++) ag[k] = a[f0 + k], bg[k] = b[f0 + k], mg[k] = m[f0 + k];
    for (size_t i = 0; i < n; i++) {
      const uint64_t h = shingles[i];
      for (size_t k = 0; k < kGroup; k++) {
        // One multiply a function over the well-mixed shingle hash (multiply-add hashing), not a mix of its own.
        const uint64_t v = ag[k] * h + bg[k];
        mg[k] = v < mg[k] ? v : mg[k];
      }
    }
    for (size_t k = 0; k < kGroup; k++) m[f0 + k] = mg[k];
  }
  for (size_t i = 0; i < n; i++)
    for (size_t f = f0; f < functions; f++) {
      const uint64_t v = a[f] * shingles[i] + b[f];
      m[f] = v < m[f] ? v : m[f];
    }
}

/* Band keys of one text; false when it has no words (no shingle, so no signature: it joins no bucket). */
bool text_bands(const Spec& spec, const char* text, size_t len, uint64_t* keys, Scratch& s) {
  word_hashes(text, len, spec.seed, s);
  shingle_hashes(s.words, spec.ngram, spec.seed, s.shingles);
  if (s.shingles.empty()) return false;
  const size_t functions = spec.a.size();
  s.minima.assign(functions, UINT64_MAX);
  uint64_t* m = s.minima.data();
  shingle_minima(s.shingles.data(), s.shingles.size(), spec.a.data(), spec.b.data(), functions, m);
  for (int band = 0; band < spec.bands; band++) {
    uint64_t k = mix64(spec.seed ^ ((uint64_t)band + 1) * 0xd6e8feb86659fd93ULL);
    for (int r = 0; r < spec.rows; r++) k = mix64(k ^ m[(size_t)band * spec.rows + r]);
    keys[band] = k;
  }
  return true;
}

void sorted_unique(std::vector<uint64_t>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

int cx_minhash_bands(const cx_minhash_spec* spec, const char* const* texts, const size_t* lengths, size_t n_texts, int threads,
                     uint64_t* keys, uint8_t* shingled, cx_status* status) {
  return cx::guarded(status, [&] {
    if (!spec) throw std::invalid_argument("a spec is required");
    if (spec->ngram < 1 || spec->bands < 1 || spec->rows < 1) throw std::invalid_argument("ngram, bands and rows must each be at least 1");
    if ((int64_t)spec->bands * spec->rows > 4096) throw std::invalid_argument("bands × rows must be at most 4096");
    if (n_texts && (!texts || !lengths || !keys || !shingled)) throw std::invalid_argument("texts, lengths, keys and shingled are required");
    Spec s{spec->ngram, spec->bands, spec->rows, spec->seed, {}, {}};
    const int functions = spec->bands * spec->rows;
    for (int f = 0; f < functions; f++) s.a.push_back(mix64(spec->seed * 0x2545f4914f6cdd1dULL + (uint64_t)f + 1) | 1);
    for (int f = 0; f < functions; f++) s.b.push_back(mix64(spec->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)f + 7));
    cx::ThreadPool pool(std::max(1, threads));
    std::vector<Scratch> scratch(pool.size());
    pool.parallel_for((int64_t)n_texts, [&](int64_t i, int t) {
      uint64_t* out = keys + (size_t)i * spec->bands;
      const bool any = text_bands(s, texts[i], lengths[i], out, scratch[t]);
      if (!any) std::fill(out, out + spec->bands, 0);
      shingled[i] = any ? 1 : 0;
    });
  });
}

int cx_shingle_jaccard(const cx_minhash_spec* spec, const char* const* a, const size_t* a_lengths, const char* const* b, const size_t* b_lengths,
                       size_t n_pairs, int threads, double* jaccard, cx_status* status) {
  return cx::guarded(status, [&] {
    if (!spec || spec->ngram < 1) throw std::invalid_argument("a spec with an ngram of at least 1 is required");
    if (n_pairs && (!a || !a_lengths || !b || !b_lengths || !jaccard)) throw std::invalid_argument("a, b, their lengths and jaccard are required");
    cx::ThreadPool pool(std::max(1, threads));
    std::vector<Scratch> scratch(pool.size());
    pool.parallel_for((int64_t)n_pairs, [&](int64_t i, int t) {
      Scratch& s = scratch[t];
      word_hashes(a[i], a_lengths[i], spec->seed, s);
      shingle_hashes(s.words, spec->ngram, spec->seed, s.other);
      word_hashes(b[i], b_lengths[i], spec->seed, s);
      shingle_hashes(s.words, spec->ngram, spec->seed, s.shingles);
      sorted_unique(s.other);
      sorted_unique(s.shingles);
      if (s.other.empty() && s.shingles.empty()) {
        jaccard[i] = 1;
        return;
      }
      size_t shared = 0;
      for (size_t x = 0, y = 0; x < s.other.size() && y < s.shingles.size();) {
        if (s.other[x] == s.shingles[y]) shared++, x++, y++;
        else if (s.other[x] < s.shingles[y]) x++;
        else y++;
      }
      jaccard[i] = (double)shared / (double)(s.other.size() + s.shingles.size() - shared);
    });
  });
}
