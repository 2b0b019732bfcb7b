#include "bpe.h"

#include <algorithm>
#include <atomic>
#include <queue>
#include <stdexcept>

namespace cx {

void CharClass::add_range(uint32_t lo, uint32_t hi) {
  for (uint32_t cp = lo; cp <= hi && cp < 65536; cp++) bmp_[cp >> 6] |= 1ull << (cp & 63);
  if (hi >= 65536) astral_.emplace_back(std::max<uint32_t>(lo, 65536), hi);
}

BpeTokenizer::BpeTokenizer(const std::vector<uint8_t>& vocab_bytes, const std::vector<uint32_t>& offsets, const std::vector<uint32_t>& merges,
                           std::vector<AddedToken> added, std::vector<PreTokenizeStep> steps, CharClass whitespace, CharClass numeric)
    : added_(std::move(added)), steps_(std::move(steps)), whitespace_(std::move(whitespace)), numeric_(std::move(numeric)) {
  static std::atomic<uint64_t> next_serial{1};
  serial_ = next_serial.fetch_add(1);
  const size_t n = offsets.empty() ? 0 : offsets.size() - 1;
  token_bytes_.resize(n);
  for (size_t i = 0; i < n; i++) token_bytes_[i].assign(vocab_bytes.begin() + offsets[i], vocab_bytes.begin() + offsets[i + 1]);
  for (const auto& a : added_) {
    if (a.id >= token_bytes_.size()) token_bytes_.resize(a.id + 1);
  }
  is_special_.assign(token_bytes_.size(), false);
  is_added_.assign(token_bytes_.size(), false);
  for (const auto& a : added_) {
    is_added_[a.id] = true;
    is_special_[a.id] = a.special;
    token_bytes_[a.id] = a.decoded;
    if (!a.content.empty()) added_first_byte_[(uint8_t)a.content[0]] = true;
  }
  for (int b = 0; b < 256; b++) byte_known_[b] = false;
  for (size_t i = 0; i < n; i++)
    if (token_bytes_[i].size() == 1 && !is_added_[i]) {
      const uint8_t b = (uint8_t)token_bytes_[i][0];
      byte_token_[b] = (uint32_t)i;
      byte_known_[b] = true;
    }
  merges_.reserve(merges.size() / 3 * 2);
  for (size_t r = 0; r + 2 < merges.size(); r += 3) {
    const uint64_t key = ((uint64_t)merges[r] << 32) | merges[r + 1];
    merges_.emplace(key, std::make_pair((uint32_t)(r / 3), merges[r + 2]));  // the first (lowest) rank wins
  }
}

namespace {

/* Decodes one UTF-8 code point at s[i]; invalid bytes decode as themselves (U+FFFD never appears in
 * valid input, and the binding hands us valid UTF-8). */
inline uint32_t next_cp(const uint8_t* s, size_t len, size_t& i) {
  const uint8_t c = s[i];
  if (c < 0x80) return s[i++];
  int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
  uint32_t cp = c & (0x3f >> n);
  size_t j = i + 1;
  for (int k = 0; k < n && j < len; k++, j++) cp = (cp << 6) | (s[j] & 0x3f);
  i = j;
  return cp;
}

struct Piece {
  uint32_t begin, end;  // code point indices
};

/* Lowest rank first, then leftmost: the order Hugging Face's BPE merges in. */
struct Cand {
  uint32_t rank;
  int32_t pos;
  uint32_t left, right;
  bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

void BpeTokenizer::encode(const char* text, size_t len, std::vector<uint32_t>& out) const {
  // Added tokens first, leftmost-longest, as Hugging Face's AddedVocabulary splits.
  size_t seg = 0, i = 0;
  while (i < len) {
    if (!added_first_byte_[(uint8_t)text[i]]) {
      i++;
      continue;
    }
    const AddedToken* best = nullptr;
    for (const auto& a : added_) {
      const size_t m = a.content.size();
      if (m > 0 && i + m <= len && (!best || m > best->content.size()) && std::equal(a.content.begin(), a.content.end(), text + i)) best = &a;
    }
    if (best) {
      if (i > seg) encode_segment(text + seg, i - seg, out);
      out.push_back(best->id);
      i += best->content.size();
      seg = i;
    } else {
      i++;
    }
  }
  if (len > seg) encode_segment(text + seg, len - seg, out);
}

void BpeTokenizer::encode_segment(const char* text, size_t len, std::vector<uint32_t>& out) const {
  const uint8_t* s = reinterpret_cast<const uint8_t*>(text);
  thread_local std::vector<uint32_t> cps, byte_at;
  thread_local std::vector<Piece> pieces, next;
  cps.clear();
  byte_at.clear();
  for (size_t i = 0; i < len;) {
    byte_at.push_back((uint32_t)i);
    cps.push_back(next_cp(s, len, i));
  }
  byte_at.push_back((uint32_t)len);
  pieces.assign(1, Piece{0, (uint32_t)cps.size()});
  for (const auto& step : steps_) {
    next.clear();
    for (const Piece& p : pieces) {
      uint32_t gap = p.begin;  // start of the text not yet emitted
      auto emit = [&](uint32_t a, uint32_t b) {
        if (a > gap) next.push_back({gap, a});
        next.push_back({a, b});
        gap = b;
      };
      switch (step.kind) {
        case StepKind::IsolateEach:
          for (uint32_t k = p.begin; k < p.end; k++)
            if (step.chars.contains(cps[k])) emit(k, k + 1);
          break;
        case StepKind::IsolateRuns:
          for (uint32_t k = p.begin; k < p.end;) {
            if (!step.chars.contains(cps[k])) {
              k++;
              continue;
            }
            uint32_t e = k + 1;
            while (e < p.end && step.chars.contains(cps[e])) e++;
            emit(k, e);
            k = e;
          }
          break;
        case StepKind::OptionalSpaceThenRun:
          for (uint32_t k = p.begin; k < p.end;) {
            uint32_t run;
            if (k + 1 < p.end && whitespace_.contains(cps[k]) && step.chars.contains(cps[k + 1])) run = k + 1;
            else if (step.chars.contains(cps[k])) run = k;
            else {
              k++;
              continue;
            }
            uint32_t e = run + 1;
            while (e < p.end && step.chars.contains(cps[e])) e++;
            emit(k, e);
            k = e;
          }
          break;
        case StepKind::TrailingSpace: {
          uint32_t k = p.end;
          while (k > p.begin && whitespace_.contains(cps[k - 1])) k--;
          if (k < p.end) emit(k, p.end);
          break;
        }
        case StepKind::Digits:
          for (uint32_t k = p.begin; k < p.end; k++)
            if (numeric_.contains(cps[k])) emit(k, k + 1);
          break;
      }
      if (p.end > gap) next.push_back({gap, p.end});
    }
    pieces.swap(next);
  }
  for (const Piece& p : pieces) bpe(s + byte_at[p.begin], byte_at[p.end] - byte_at[p.begin], out);
}

void BpeTokenizer::bpe(const uint8_t* bytes, size_t n, std::vector<uint32_t>& out) const {
  if (n == 0) return;
  // Words repeat: a per-thread cache of short pieces skips the merges. It never changes the result.
  // Keyed by the instance's serial, not its address: a new tokenizer may reuse a freed one's memory.
  struct Cache {
    uint64_t owner = 0;
    std::unordered_map<std::string, std::vector<uint32_t>> map;
  };
  thread_local Cache cache;
  if (cache.owner != serial_) {
    cache.map.clear();
    cache.owner = serial_;
  }
  std::string key;
  if (n <= 48) {
    key.assign(reinterpret_cast<const char*>(bytes), n);
    const auto it = cache.map.find(key);
    if (it != cache.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t before = out.size();
  bpe_uncached(bytes, n, out);
  if (!key.empty()) {
    if (cache.map.size() >= (1u << 18)) cache.map.clear();
    cache.map.emplace(std::move(key), std::vector<uint32_t>(out.begin() + (std::ptrdiff_t)before, out.end()));
  }
}

void BpeTokenizer::bpe_uncached(const uint8_t* bytes, size_t n, std::vector<uint32_t>& out) const {
  thread_local std::vector<uint32_t> sym;
  thread_local std::vector<int32_t> prev, nxt;
  sym.resize(n);
  prev.resize(n);
  nxt.resize(n);
  for (size_t i = 0; i < n; i++) {
    if (!byte_known_[bytes[i]]) throw std::runtime_error("the vocabulary has no token for byte " + std::to_string(bytes[i]));
    sym[i] = byte_token_[bytes[i]];
    prev[i] = (int32_t)i - 1;
    nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  }
  if (n == 1) {
    out.push_back(sym[0]);
    return;
  }
  thread_local std::vector<Cand> heap;
  heap.clear();
  const auto later = std::greater<Cand>();
  auto consider = [&](int32_t a) {
    if (a < 0) return;
    const int32_t b = nxt[a];
    if (b < 0) return;
    const auto it = merges_.find(((uint64_t)sym[a] << 32) | sym[b]);
    if (it != merges_.end()) {
      heap.push_back({it->second.first, a, sym[a], sym[b]});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i + 1 < (int32_t)n; i++) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Cand c = heap.back();
    heap.pop_back();
    const int32_t b = nxt[c.pos];
    if (sym[c.pos] != c.left || b < 0 || sym[b] != c.right) continue;  // stale
    sym[c.pos] = merges_.at(((uint64_t)c.left << 32) | c.right).second;
    nxt[c.pos] = nxt[b];
    if (nxt[b] >= 0) prev[nxt[b]] = c.pos;
    sym[b] = UINT32_MAX;  // removed
    consider(prev[c.pos]);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = nxt[i]) out.push_back(sym[i]);
}

std::string BpeTokenizer::decode(const uint32_t* ids, size_t n, bool skip_special) const {
  std::string bytes;
  for (size_t k = 0; k < n; k++) {
    const uint32_t id = ids[k];
    if (id >= token_bytes_.size()) continue;
    if (skip_special && is_special_[id]) continue;
    bytes += token_bytes_[id];
  }
  // Lossy UTF-8: each maximal invalid subsequence becomes one U+FFFD, as Rust's from_utf8_lossy does.
  std::string outs;
  const uint8_t* s = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t len = bytes.size();
  for (size_t i = 0; i < len;) {
    const uint8_t c = s[i];
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
      outs += (char)c;
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      outs += "\xef\xbf\xbd";
      i++;
      continue;
    }
    size_t j = i + 1;
    bool ok = true;
    for (size_t k = 0; k < need; k++, j++) {
      const uint8_t lo_k = k == 0 ? lo : 0x80, hi_k = k == 0 ? hi : 0xbf;
      if (j >= len || s[j] < lo_k || s[j] > hi_k) {
        ok = false;
        break;
      }
    }
    if (ok) {
      outs.append(bytes, i, j - i);
      i = j;
    } else {
      outs += "\xef\xbf\xbd";
      i = j;  // skip the maximal valid prefix of the broken sequence
    }
  }
  return outs;
}

}  // namespace cx
