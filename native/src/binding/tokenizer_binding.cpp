/* N-API binding of the tokenizer's C API (include/chuxin.h): a thin mirror; encodeBatch runs on a worker thread.
 * The spec comes from src/tokenizer/spec.ts, which reads tokenizer.json and refuses features this tokenizer
 * does not implement. */
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../../include/chuxin.h"

namespace {

std::vector<uint32_t> u32(const Napi::Value& v) {
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  return std::vector<uint32_t>(a.Data(), a.Data() + a.ElementLength());
}

int step_kind(const std::string& kind) {
  if (kind == "isolate_each") return CX_ISOLATE_EACH;
  if (kind == "isolate_runs") return CX_ISOLATE_RUNS;
  if (kind == "optional_space_then_run") return CX_OPTIONAL_SPACE_THEN_RUN;
  if (kind == "trailing_space") return CX_TRAILING_SPACE;
  if (kind == "digits") return CX_DIGITS;
  throw std::runtime_error("unknown pre-tokenizer step " + kind);
}

/* Owns a tokenizer shared by the JS object and any encodeBatch still running. */
struct Handle {
  cx_tokenizer* tok = nullptr;
  ~Handle() { cx_tokenizer_free(tok); }
};

Napi::Object batch_result(Napi::Env env, const cx_token_batch& b) {
  Napi::Object r = Napi::Object::New(env);
  Napi::Uint32Array ids = Napi::Uint32Array::New(env, b.n_ids);
  std::copy(b.ids, b.ids + b.n_ids, ids.Data());
  Napi::Uint32Array lengths = Napi::Uint32Array::New(env, b.n_texts);
  std::copy(b.lengths, b.lengths + b.n_texts, lengths.Data());
  r.Set("ids", ids);
  r.Set("lengths", lengths);
  return r;
}

class EncodeBatch : public Napi::AsyncWorker {
 public:
  EncodeBatch(Napi::Env env, std::shared_ptr<Handle> handle, std::vector<std::string> texts)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), handle_(std::move(handle)), texts_(std::move(texts)) {}
  ~EncodeBatch() override { cx_token_batch_free(&batch_); }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const std::string& t : texts_) ptrs.push_back(t.data()), lens.push_back(t.size());
    cx_status st{};
    if (cx_tokenizer_encode_batch(handle_->tok, ptrs.data(), lens.data(), texts_.size(), &batch_, &st) != CX_OK)
      SetError(st.message);
  }
  void OnOK() override { deferred_.Resolve(batch_result(Env(), batch_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Handle> handle_;
  std::vector<std::string> texts_;
  cx_token_batch batch_{};
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
      Napi::Buffer<uint8_t> vocab = spec.Get("vocabBytes").As<Napi::Buffer<uint8_t>>();
      const std::vector<uint32_t> offsets = u32(spec.Get("vocabOffsets")), merges = u32(spec.Get("merges"));
      const std::vector<uint32_t> whitespace = u32(spec.Get("whitespace")), numeric = u32(spec.Get("numeric"));
      // The strings and arrays the C structs point into, alive until cx_tokenizer_create has copied them.
      Napi::Array a = spec.Get("added").As<Napi::Array>();
      std::vector<std::string> contents(a.Length()), decoded(a.Length());
      std::vector<cx_added_token> added(a.Length());
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Object t = a.Get(i).As<Napi::Object>();
        Napi::Buffer<uint8_t> bytes = t.Get("bytes").As<Napi::Buffer<uint8_t>>();
        contents[i] = t.Get("content").As<Napi::String>().Utf8Value();
        decoded[i].assign(bytes.Data(), bytes.Data() + bytes.Length());
        added[i] = {contents[i].data(), contents[i].size(), t.Get("id").As<Napi::Number>().Uint32Value(), t.Get("special").As<Napi::Boolean>().Value(),
                    reinterpret_cast<const uint8_t*>(decoded[i].data()), decoded[i].size()};
      }
      Napi::Array s = spec.Get("steps").As<Napi::Array>();
      std::vector<std::vector<uint32_t>> ranges(s.Length());
      std::vector<cx_pretokenize_step> steps(s.Length());
      for (uint32_t i = 0; i < s.Length(); i++) {
        Napi::Object st = s.Get(i).As<Napi::Object>();
        if (st.Has("chars")) ranges[i] = u32(st.Get("chars"));
        steps[i] = {step_kind(st.Get("kind").As<Napi::String>().Utf8Value()), ranges[i].data(), ranges[i].size()};
      }
      const cx_tokenizer_spec c{vocab.Data(), vocab.Length(), offsets.data(), offsets.size(), merges.data(), merges.size(),
                                added.data(), added.size(), steps.data(), steps.size(), whitespace.data(), whitespace.size(),
                                numeric.data(), numeric.size()};
      const int threads = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 1;
      handle_ = std::make_shared<Handle>();
      cx_status st{};
      if (cx_tokenizer_create(&c, threads, &handle_->tok, &st) != CX_OK) throw std::runtime_error(st.message);
    } catch (const std::exception& e) {
      Napi::Error::New(env, std::string("cannot build the native tokenizer: ") + e.what()).ThrowAsJavaScriptException();
    }
  }

 private:
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    const char* ptr = text.data();
    const size_t len = text.size();
    cx_token_batch b{};
    cx_status st{};
    if (cx_tokenizer_encode_batch(handle_->tok, &ptr, &len, 1, &b, &st) != CX_OK) {
      Napi::Error::New(env, st.message).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array out = Napi::Uint32Array::New(env, b.n_ids);
    std::copy(b.ids, b.ids + b.n_ids, out.Data());
    cx_token_batch_free(&b);
    return out;
  }

  Napi::Value EncodeBatchMethod(const Napi::CallbackInfo& info) {
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<std::string> texts(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) texts[i] = arr.Get(i).As<Napi::String>().Utf8Value();
    auto* job = new EncodeBatch(info.Env(), handle_, std::move(texts));
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }

  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint32Array ids = info[0].As<Napi::Uint32Array>();
    const bool skip = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    char* text = nullptr;
    size_t length = 0;
    cx_status st{};
    if (cx_tokenizer_decode(handle_->tok, ids.Data(), ids.ElementLength(), skip, &text, &length, &st) != CX_OK) {
      Napi::Error::New(env, st.message).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::String out = Napi::String::New(env, text, length);
    cx_string_free(text);
    return out;
  }

  std::shared_ptr<Handle> handle_;
};

}  // namespace

namespace cx {
void register_tokenizer(Napi::Env env, Napi::Object exports) { exports.Set("Tokenizer", Tokenizer::Define(env)); }
}  // namespace cx
