/* N-API binding of the native BPE tokenizer. The spec comes from src/tokenizer/spec.ts, which reads
 * tokenizer.json and refuses features this tokenizer does not implement. */
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../util/threadpool.h"
#include "../tokenizer/bpe.h"

namespace {

std::vector<uint32_t> u32(const Napi::Value& v) {
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  return std::vector<uint32_t>(a.Data(), a.Data() + a.ElementLength());
}

cx::CharClass char_class(const Napi::Value& v) {
  cx::CharClass c;
  const std::vector<uint32_t> ranges = u32(v);
  for (size_t i = 0; i + 1 < ranges.size(); i += 2) c.add_range(ranges[i], ranges[i + 1]);
  return c;
}

class EncodeBatch : public Napi::AsyncWorker {
 public:
  EncodeBatch(Napi::Env env, std::shared_ptr<cx::BpeTokenizer> tok, std::shared_ptr<cx::ThreadPool> pool, std::vector<std::string> texts)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), tok_(std::move(tok)), pool_(std::move(pool)), texts_(std::move(texts)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<std::vector<uint32_t>> per(texts_.size());
    std::vector<std::string> errors(texts_.size());
    pool_->parallel_for((int64_t)texts_.size(), [&](int64_t i, int) {
      try {
        tok_->encode(texts_[i].data(), texts_[i].size(), per[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
    for (size_t i = 0; i < errors.size(); i++)
      if (!errors[i].empty()) return SetError("document " + std::to_string(i) + ": " + errors[i]);
    size_t total = 0;
    for (auto& p : per) total += p.size();
    ids_.reserve(total);
    lengths_.reserve(per.size());
    for (auto& p : per) {
      lengths_.push_back((uint32_t)p.size());
      ids_.insert(ids_.end(), p.begin(), p.end());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    Napi::Uint32Array ids = Napi::Uint32Array::New(env, ids_.size());
    std::copy(ids_.begin(), ids_.end(), ids.Data());
    Napi::Uint32Array lengths = Napi::Uint32Array::New(env, lengths_.size());
    std::copy(lengths_.begin(), lengths_.end(), lengths.Data());
    r.Set("ids", ids);
    r.Set("lengths", lengths);
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<cx::BpeTokenizer> tok_;
  std::shared_ptr<cx::ThreadPool> pool_;
  std::vector<std::string> texts_;
  std::vector<uint32_t> ids_, lengths_;
};

class Tokenizer : public Napi::ObjectWrap<Tokenizer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tokenizer",
                       {InstanceMethod("encode", &Tokenizer::Encode), InstanceMethod("encodeBatch", &Tokenizer::EncodeBatchMethod),
                        InstanceMethod("decode", &Tokenizer::Decode)});
  }

  Tokenizer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tokenizer>(info) {
    Napi::Env env = info.Env();
    try {
      Napi::Object spec = info[0].As<Napi::Object>();
      Napi::Buffer<uint8_t> vb = spec.Get("vocabBytes").As<Napi::Buffer<uint8_t>>();
      std::vector<uint8_t> vocab(vb.Data(), vb.Data() + vb.Length());
      std::vector<cx::AddedToken> added;
      Napi::Array a = spec.Get("added").As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Object t = a.Get(i).As<Napi::Object>();
        Napi::Buffer<uint8_t> decoded = t.Get("bytes").As<Napi::Buffer<uint8_t>>();
        added.push_back({t.Get("content").As<Napi::String>().Utf8Value(), t.Get("id").As<Napi::Number>().Uint32Value(),
                         t.Get("special").As<Napi::Boolean>().Value(), std::string(decoded.Data(), decoded.Data() + decoded.Length())});
      }
      std::vector<cx::PreTokenizeStep> steps;
      Napi::Array s = spec.Get("steps").As<Napi::Array>();
      for (uint32_t i = 0; i < s.Length(); i++) {
        Napi::Object st = s.Get(i).As<Napi::Object>();
        const std::string kind = st.Get("kind").As<Napi::String>().Utf8Value();
        cx::PreTokenizeStep step{cx::StepKind::Digits, {}};
        if (kind == "isolate_each") step.kind = cx::StepKind::IsolateEach;
        else if (kind == "isolate_runs") step.kind = cx::StepKind::IsolateRuns;
        else if (kind == "optional_space_then_run") step.kind = cx::StepKind::OptionalSpaceThenRun;
        else if (kind == "trailing_space") step.kind = cx::StepKind::TrailingSpace;
        else if (kind == "digits") step.kind = cx::StepKind::Digits;
        else throw std::runtime_error("unknown pre-tokenizer step " + kind);
        if (st.Has("chars")) step.chars = char_class(st.Get("chars"));
        steps.push_back(std::move(step));
      }
      tok_ = std::make_shared<cx::BpeTokenizer>(vocab, u32(spec.Get("vocabOffsets")), u32(spec.Get("merges")), std::move(added), std::move(steps),
                                                char_class(spec.Get("whitespace")), char_class(spec.Get("numeric")));
      const int threads = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 1;
      pool_ = std::make_shared<cx::ThreadPool>(threads);
    } catch (const std::exception& e) {
      Napi::Error::New(env, std::string("cannot build the native tokenizer: ") + e.what()).ThrowAsJavaScriptException();
    }
  }

 private:
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    std::vector<uint32_t> ids;
    try {
      tok_->encode(text.data(), text.size(), ids);
    } catch (const std::exception& e) {
      Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array out = Napi::Uint32Array::New(env, ids.size());
    std::copy(ids.begin(), ids.end(), out.Data());
    return out;
  }

  Napi::Value EncodeBatchMethod(const Napi::CallbackInfo& info) {
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<std::string> texts(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) texts[i] = arr.Get(i).As<Napi::String>().Utf8Value();
    auto* job = new EncodeBatch(info.Env(), tok_, pool_, std::move(texts));
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }

  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Uint32Array ids = info[0].As<Napi::Uint32Array>();
    const bool skip = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    return Napi::String::New(info.Env(), tok_->decode(ids.Data(), ids.ElementLength(), skip));
  }

  std::shared_ptr<cx::BpeTokenizer> tok_;
  std::shared_ptr<cx::ThreadPool> pool_;
};

}  // namespace

namespace cx {
void register_tokenizer(Napi::Env env, Napi::Object exports) { exports.Set("Tokenizer", Tokenizer::Define(env)); }
}  // namespace cx
