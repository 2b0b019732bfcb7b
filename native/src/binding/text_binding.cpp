/* N-API binding of the text ops of include/chuxin.h (MinHash band keys): a thin mirror; minhashBands runs on a
 * worker thread, so the build's event loop keeps reading while a batch is hashed. */
#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

#include "../../include/chuxin.h"

namespace {

class MinhashBands : public Napi::AsyncWorker {
 public:
  MinhashBands(Napi::Env env, cx_minhash_spec spec, std::vector<std::string> texts, int threads)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), spec_(spec), texts_(std::move(texts)), threads_(threads) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const std::string& t : texts_) ptrs.push_back(t.data()), lens.push_back(t.size());
    keys_.assign(texts_.size() * (size_t)std::max(spec_.bands, 0), 0);
    shingled_.assign(texts_.size(), 0);
    cx_status st{};
    if (cx_minhash_bands(&spec_, ptrs.data(), lens.data(), texts_.size(), threads_, keys_.data(), shingled_.data(), &st) != CX_OK) SetError(st.message);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    Napi::ArrayBuffer kb = Napi::ArrayBuffer::New(env, keys_.size() * sizeof(uint64_t));
    if (!keys_.empty()) std::memcpy(kb.Data(), keys_.data(), keys_.size() * sizeof(uint64_t));
    r.Set("keys", Napi::BigUint64Array::New(env, keys_.size(), kb, 0));
    Napi::Uint8Array sh = Napi::Uint8Array::New(env, shingled_.size());
    if (!shingled_.empty()) std::memcpy(sh.Data(), shingled_.data(), shingled_.size());
    r.Set("shingled", sh);
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  cx_minhash_spec spec_;
  std::vector<std::string> texts_;
  int threads_;
  std::vector<uint64_t> keys_;
  std::vector<uint8_t> shingled_;
};

/* minhashBands(texts: string[], spec: {ngram, bands, rows, seed}, threads) -> Promise<{keys, shingled}> */
Napi::Value MinhashBandsMethod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsObject() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "minhashBands(texts: string[], spec: {ngram, bands, rows, seed}, threads: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> texts;
  texts.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) texts.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  Napi::Object s = info[1].As<Napi::Object>();
  cx_minhash_spec spec{};
  spec.ngram = s.Get("ngram").As<Napi::Number>().Int32Value();
  spec.bands = s.Get("bands").As<Napi::Number>().Int32Value();
  spec.rows = s.Get("rows").As<Napi::Number>().Int32Value();
  spec.seed = (uint64_t)s.Get("seed").As<Napi::Number>().Int64Value();
  auto* worker = new MinhashBands(env, spec, std::move(texts), info[2].As<Napi::Number>().Int32Value());
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace

namespace cx {
void register_text(Napi::Env env, Napi::Object exports) { exports.Set("minhashBands", Napi::Function::New(env, MinhashBandsMethod, "minhashBands")); }
}  // namespace cx
