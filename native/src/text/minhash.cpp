/* MinHash LSH band keys (include/chuxin.h, cx_minhash_bands). The text arrives simplified by the caller (NFKC,
 * lower case, punctuation and symbols as spaces, each CJK character its own word: src/pipeline/stages/
 * near-dedup-text.ts), so a word here is a run of bytes between ASCII spaces. A shingle is `ngram` consecutive
 * words; its 64-bit hash chains the words' hashes, so no shingle string is built. Each of bands × rows hash
 * functions is the shingle hash mixed with its own seed; a band's key mixes its rows' minima with the band index.
 * Every value depends only on the text and the spec: the same keys on any machine and thread count. */
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../util/status.h"
#include "../util/threadpool.h"

namespace {

/* splitmix64's finaliser: a bijection of 64-bit words with full avalanche. */
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* A word's bytes to 64 bits: 8 bytes at a time, then the length, through mix64. */
uint64_t word_hash(const unsigned char* p, size_t n, uint64_t seed) {
  uint64_t h = mix64(seed ^ 0x9e3779b97f4a7c15ULL);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    h = mix64(h ^ v);
  }
  uint64_t tail = 0;
  for (size_t k = 0; i + k < n; k++) tail |= (uint64_t)p[i + k] << (8 * k);
  return mix64(h ^ tail ^ ((uint64_t)n << 56));
}

struct Spec {
  int ngram, bands, rows;
  uint64_t seed;
  std::vector<uint64_t> fn_seeds;  // one per hash function, bands × rows
};

/* Band keys of one text; false when it has no words (no shingle, so no signature: it joins no bucket). */
bool text_bands(const Spec& spec, const unsigned char* text, size_t len, uint64_t* keys, std::vector<uint64_t>& words,
                std::vector<uint64_t>& minima) {
  words.clear();
  for (size_t i = 0; i < len;) {
    while (i < len && text[i] == ' ') i++;
    size_t start = i;
    while (i < len && text[i] != ' ') i++;
    if (i > start) words.push_back(word_hash(text + start, i - start, spec.seed));
  }
  if (words.empty()) return false;
  const size_t functions = spec.fn_seeds.size();
  minima.assign(functions, UINT64_MAX);
  // A text shorter than the n-gram is one shingle of all its words.
  const size_t n = std::min<size_t>((size_t)spec.ngram, words.size());
  for (size_t s = 0; s + n <= words.size(); s++) {
    uint64_t h = spec.seed;
    for (size_t k = 0; k < n; k++) h = mix64(h ^ words[s + k]);
    for (size_t f = 0; f < functions; f++) {
      const uint64_t v = mix64(h ^ spec.fn_seeds[f]);
      if (v < minima[f]) minima[f] = v;
    }
  }
  for (int b = 0; b < spec.bands; b++) {
    uint64_t k = mix64(spec.seed ^ ((uint64_t)b + 1) * 0xd6e8feb86659fd93ULL);
    for (int r = 0; r < spec.rows; r++) k = mix64(k ^ minima[(size_t)b * spec.rows + r]);
    keys[b] = k;
  }
  return true;
}

}  // namespace

int cx_minhash_bands(const cx_minhash_spec* spec, const char* const* texts, const size_t* lengths, size_t n_texts, int threads,
                     uint64_t* keys, uint8_t* shingled, cx_status* status) {
  return cx::guarded(status, [&] {
    if (!spec) throw std::invalid_argument("a spec is required");
    if (spec->ngram < 1 || spec->bands < 1 || spec->rows < 1) throw std::invalid_argument("ngram, bands and rows must each be at least 1");
    if (n_texts && (!texts || !lengths || !keys || !shingled)) throw std::invalid_argument("texts, lengths, keys and shingled are required");
    if ((int64_t)spec->bands * spec->rows > 4096) throw std::invalid_argument("bands × rows must be at most 4096");
    Spec s{spec->ngram, spec->bands, spec->rows, spec->seed, {}};
    for (int f = 0; f < spec->bands * spec->rows; f++) s.fn_seeds.push_back(mix64(spec->seed * 0x2545f4914f6cdd1dULL + (uint64_t)f + 1));
    cx::ThreadPool pool(std::max(1, threads));
    std::vector<std::vector<uint64_t>> words(pool.size()), minima(pool.size());
    pool.parallel_for((int64_t)n_texts, [&](int64_t i, int t) {
      uint64_t* out = keys + (size_t)i * spec->bands;
      const bool any = text_bands(s, reinterpret_cast<const unsigned char*>(texts[i]), lengths[i], out, words[t], minima[t]);
      if (!any) std::fill(out, out + spec->bands, 0);
      shingled[i] = any ? 1 : 0;
    });
  });
}
