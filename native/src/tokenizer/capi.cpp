/* The tokenizer's part of the C API (include/chuxin.h): every entry point returns a status, never throws or exits. */
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../include/chuxin.h"
#include "../util/status.h"
#include "../util/threadpool.h"
#include "bpe.h"

struct cx_tokenizer {
  std::unique_ptr<cx::BpeTokenizer> bpe;
  std::unique_ptr<cx::ThreadPool> pool;
};

namespace {

using cx::guarded;

cx::CharClass char_class(const uint32_t* ranges, size_t n, const char* what) {
  if (n % 2) throw std::invalid_argument(std::string(what) + ": code point ranges come in pairs (lo, hi)");
  cx::CharClass c;
  for (size_t i = 0; i + 1 < n; i += 2) c.add_range(ranges[i], ranges[i + 1]);
  return c;
}

cx::StepKind step_kind(int kind) {
  switch (kind) {
    case CX_ISOLATE_EACH: return cx::StepKind::IsolateEach;
    case CX_ISOLATE_RUNS: return cx::StepKind::IsolateRuns;
    case CX_OPTIONAL_SPACE_THEN_RUN: return cx::StepKind::OptionalSpaceThenRun;
    case CX_TRAILING_SPACE: return cx::StepKind::TrailingSpace;
    case CX_DIGITS: return cx::StepKind::Digits;
  }
  throw std::invalid_argument("unknown pre-tokenizer step kind " + std::to_string(kind));
}

}  // namespace

extern "C" {

int cx_tokenizer_create(const cx_tokenizer_spec* spec, int threads, cx_tokenizer** out, cx_status* status) {
  return guarded(status, [&] {
    if (!spec || !out) throw std::invalid_argument("spec and out are required");
    if (spec->n_vocab_offsets < 1) throw std::invalid_argument("the vocabulary needs its offsets (size + 1 values)");
    if (spec->n_merges % 3) throw std::invalid_argument("merges come in (left, right, merged) triples");
    std::vector<cx::AddedToken> added;
    for (size_t i = 0; i < spec->n_added; i++) {
      const cx_added_token& t = spec->added[i];
      added.push_back({std::string(t.content, t.content_len), t.id, t.special != 0,
                       std::string(reinterpret_cast<const char*>(t.bytes), t.n_bytes)});
    }
    std::vector<cx::PreTokenizeStep> steps;
    for (size_t i = 0; i < spec->n_steps; i++)
      steps.push_back({step_kind(spec->steps[i].kind), char_class(spec->steps[i].ranges, spec->steps[i].n_ranges, "a pre-tokenizer step")});
    std::unique_ptr<cx_tokenizer> tok(new cx_tokenizer());
    tok->bpe = std::make_unique<cx::BpeTokenizer>(
        std::vector<uint8_t>(spec->vocab_bytes, spec->vocab_bytes + spec->n_vocab_bytes),
        std::vector<uint32_t>(spec->vocab_offsets, spec->vocab_offsets + spec->n_vocab_offsets),
        std::vector<uint32_t>(spec->merges, spec->merges + spec->n_merges), std::move(added), std::move(steps),
        char_class(spec->whitespace, spec->n_whitespace, "whitespace"), char_class(spec->numeric, spec->n_numeric, "numeric"));
    tok->pool = std::make_unique<cx::ThreadPool>(threads > 0 ? threads : 1);
    *out = tok.release();
  });
}

void cx_tokenizer_free(cx_tokenizer* tokenizer) { delete tokenizer; }

size_t cx_tokenizer_vocab_size(const cx_tokenizer* tokenizer) { return tokenizer->bpe->vocab_size(); }

int cx_tokenizer_encode_batch(const cx_tokenizer* tokenizer, const char* const* texts, const size_t* lengths, size_t n_texts,
                              cx_token_batch* out, cx_status* status) {
  return guarded(status, [&] {
    if (!tokenizer || !out || (n_texts && (!texts || !lengths))) throw std::invalid_argument("tokenizer, texts, lengths and out are required");
    *out = cx_token_batch{};
    std::vector<std::vector<uint32_t>> per(n_texts);
    std::vector<std::string> errors(n_texts);
    tokenizer->pool->parallel_for((int64_t)n_texts, [&](int64_t i, int) {
      try {
        tokenizer->bpe->encode(texts[i], lengths[i], per[(size_t)i]);
      } catch (const std::exception& e) {
        errors[(size_t)i] = e.what();
      }
    });
    for (size_t i = 0; i < n_texts; i++)
      if (!errors[i].empty()) throw std::runtime_error("text " + std::to_string(i) + ": " + errors[i]);
    size_t total = 0;
    for (const auto& p : per) total += p.size();
    // malloc'd, so the caller frees them through cx_token_batch_free whatever C++ runtime it has.
    uint32_t* ids = static_cast<uint32_t*>(std::malloc(std::max<size_t>(total, 1) * sizeof(uint32_t)));
    uint32_t* lens = static_cast<uint32_t*>(std::malloc(std::max<size_t>(n_texts, 1) * sizeof(uint32_t)));
    if (!ids || !lens) {
      std::free(ids);
      std::free(lens);
      throw std::bad_alloc();
    }
    size_t at = 0;
    for (size_t i = 0; i < n_texts; i++) {
      if (!per[i].empty()) std::memcpy(ids + at, per[i].data(), per[i].size() * sizeof(uint32_t));
      at += per[i].size();
      lens[i] = (uint32_t)per[i].size();
    }
    *out = cx_token_batch{ids, total, lens, n_texts};
  });
}

void cx_token_batch_free(cx_token_batch* batch) {
  if (!batch) return;
  std::free(batch->ids);
  std::free(batch->lengths);
  *batch = cx_token_batch{};
}

int cx_tokenizer_decode(const cx_tokenizer* tokenizer, const uint32_t* ids, size_t n, int skip_special, char** text, size_t* length,
                        cx_status* status) {
  return guarded(status, [&] {
    if (!tokenizer || !text || !length || (n && !ids)) throw std::invalid_argument("tokenizer, ids, text and length are required");
    const std::string s = tokenizer->bpe->decode(ids, n, skip_special != 0);
    char* copy = static_cast<char*>(std::malloc(s.size() + 1));
    if (!copy) throw std::bad_alloc();
    std::memcpy(copy, s.data(), s.size());
    copy[s.size()] = '\0';
    *text = copy;
    *length = s.size();
  });
}

void cx_string_free(char* text) { std::free(text); }

}  // extern "C"
