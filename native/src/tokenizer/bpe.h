#pragma once
/* A byte-level BPE tokenizer for the subset of tokenizer.json the DeepSeek LLM file uses: added tokens,
 * a Sequence of Split (Isolated) steps over character classes, Digits, ByteLevel, and BPE merges by rank.
 * Pre-tokenisation is a table-driven scanner over code points; no regex engine. */
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace cx {

/* A set of code points: a bitmap for the BMP and sorted ranges above it. */
class CharClass {
 public:
  CharClass() : bmp_(65536 / 64, 0) {}
  void add_range(uint32_t lo, uint32_t hi);
  bool contains(uint32_t cp) const {
    if (cp < 65536) return (bmp_[cp >> 6] >> (cp & 63)) & 1;
    for (const auto& r : astral_)
      if (cp >= r.first && cp <= r.second) return true;
    return false;
  }

 private:
  std::vector<uint64_t> bmp_;
  std::vector<std::pair<uint32_t, uint32_t>> astral_;
};

enum class StepKind { IsolateEach, IsolateRuns, OptionalSpaceThenRun, TrailingSpace, Digits };

struct PreTokenizeStep {
  StepKind kind;
  CharClass chars;  // unused by TrailingSpace and Digits
};

struct AddedToken {
  std::string content;  // UTF-8, as matched in text
  uint32_t id;
  bool special;
  std::string decoded;  // the bytes decoding gives back
};

class BpeTokenizer {
 public:
  /* vocab_bytes[offsets[i] .. offsets[i+1]) are token i's raw bytes (after undoing the byte-level map).
   * merges: (left, right, merged) id triples in rank order. */
  BpeTokenizer(const std::vector<uint8_t>& vocab_bytes, const std::vector<uint32_t>& offsets, const std::vector<uint32_t>& merges,
               std::vector<AddedToken> added, std::vector<PreTokenizeStep> steps, CharClass whitespace, CharClass numeric);

  /* Ids of UTF-8 text, without special tokens added (special tokens written in the text are still matched). */
  void encode(const char* text, size_t len, std::vector<uint32_t>& out) const;
  /* Hugging Face's decode: ByteLevel decoder over every token, lossy UTF-8. */
  std::string decode(const uint32_t* ids, size_t n, bool skip_special) const;
  size_t vocab_size() const { return token_bytes_.size(); }

 private:
  void encode_segment(const char* text, size_t len, std::vector<uint32_t>& out) const;
  void bpe(const uint8_t* bytes, size_t n, std::vector<uint32_t>& out) const;
  void bpe_uncached(const uint8_t* bytes, size_t n, std::vector<uint32_t>& out) const;

  std::vector<std::string> token_bytes_;
  std::vector<bool> is_special_;
  std::vector<bool> is_added_;
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;  // (left << 32 | right) -> (rank, merged)
  uint32_t byte_token_[256];
  bool byte_known_[256];
  std::vector<AddedToken> added_;
  bool added_first_byte_[256] = {};
  std::vector<PreTokenizeStep> steps_;
  CharClass whitespace_, numeric_;
  uint64_t serial_ = 0;
};

}  // namespace cx
