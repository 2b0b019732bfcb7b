/* N-API binding of the text ops of include/chuxin.h (MinHash band keys, quality filters): a thin mirror; the batch
 * calls run on a worker thread, so the build's event loop keeps reading while a batch is worked on. */
#include <napi.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../../include/chuxin.h"

namespace {

/* A JS array of texts as UTF-8 copies the worker thread may read: strings, or the UTF-8 bytes themselves (a
 * Uint8Array, as DuckDB hands them over), which are copied as they are. */
std::vector<std::string> strings(const Napi::Array& arr) {
  std::vector<std::string> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (v.IsTypedArray()) {
      Napi::Uint8Array bytes = v.As<Napi::Uint8Array>();
      out.emplace_back(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength());
    } else {
      out.push_back(v.As<Napi::String>().Utf8Value());
    }
  }
  return out;
}

/* A vector's values as a new JS typed array of their type (Uint8Array, Uint16Array, Float64Array, BigUint64Array). */
template <typename T>
Napi::TypedArrayOf<T> to_js(Napi::Env env, const std::vector<T>& v) {
  Napi::TypedArrayOf<T> out = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(T));
  return out;
}

/* Whether every byte is ASCII: such a text is its own NFKC, so the addon may hash it as it is (it lower-cases
 * ASCII itself); any other needs JS's NFKC first. */
bool ascii(const std::string& t) {
  unsigned char any = 0;
  for (unsigned char c : t) any |= c;
  return any < 0x80;
}

/* qualityCheckAndHash's per-text MinHash states (src/native/addon.ts declares the same). */
constexpr uint8_t HASH_NOT_DONE = 0, HASH_KEYS = 1, HASH_NO_WORDS = 2;

/* {ngram, bands, rows, seed}; bands and rows may be left out (shingleJaccard needs neither) and are then 1. */
cx_minhash_spec minhash_spec(const Napi::Object& s) {
  cx_minhash_spec spec{};
  spec.ngram = s.Get("ngram").As<Napi::Number>().Int32Value();
  spec.bands = s.Has("bands") ? s.Get("bands").As<Napi::Number>().Int32Value() : 1;
  spec.rows = s.Has("rows") ? s.Get("rows").As<Napi::Number>().Int32Value() : 1;
  spec.seed = (uint64_t)s.Get("seed").As<Napi::Number>().Int64Value();
  return spec;
}

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
    r.Set("keys", to_js(env, keys_));
    r.Set("shingled", to_js(env, shingled_));
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
  auto* worker = new MinhashBands(env, minhash_spec(info[1].As<Napi::Object>()), strings(info[0].As<Napi::Array>()), info[2].As<Napi::Number>().Int32Value());
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

class ShingleJaccard : public Napi::AsyncWorker {
 public:
  ShingleJaccard(Napi::Env env, cx_minhash_spec spec, std::vector<std::string> a, std::vector<std::string> b, int threads)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), spec_(spec), a_(std::move(a)), b_(std::move(b)), threads_(threads) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<const char*> pa, pb;
    std::vector<size_t> la, lb;
    for (const std::string& t : a_) pa.push_back(t.data()), la.push_back(t.size());
    for (const std::string& t : b_) pb.push_back(t.data()), lb.push_back(t.size());
    out_.assign(a_.size(), 0);
    cx_status st{};
    if (cx_shingle_jaccard(&spec_, pa.data(), la.data(), pb.data(), lb.data(), a_.size(), threads_, out_.data(), &st) != CX_OK) SetError(st.message);
  }
  void OnOK() override {
    deferred_.Resolve(to_js(Env(), out_));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  cx_minhash_spec spec_;
  std::vector<std::string> a_, b_;
  int threads_;
  std::vector<double> out_;
};

/* shingleJaccard(a: string[], b: string[], spec: {ngram, seed}, threads) -> Promise<Float64Array> */
Napi::Value ShingleJaccardMethod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsObject() || !info[3].IsNumber() ||
      info[0].As<Napi::Array>().Length() != info[1].As<Napi::Array>().Length()) {
    Napi::TypeError::New(env, "shingleJaccard(a: string[], b: string[] of the same length, spec: {ngram, seed}, threads: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new ShingleJaccard(env, minhash_spec(info[2].As<Napi::Object>()), strings(info[0].As<Napi::Array>()), strings(info[1].As<Napi::Array>()),
                                    info[3].As<Napi::Number>().Int32Value());
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

/* The quality rules over a batch; with a MinHash spec, also the band keys of the texts that pass and are ASCII, so
 * those are converted and handed over once for both. */
class QualityCheck : public Napi::AsyncWorker {
 public:
  QualityCheck(Napi::Env env, std::vector<double> params, std::vector<std::string> texts, std::vector<uint8_t> presets, int threads, const cx_minhash_spec* hash)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        params_(std::move(params)),
        texts_(std::move(texts)),
        presets_(std::move(presets)),
        threads_(threads),
        hashing_(hash != nullptr),
        spec_(hash ? *hash : cx_minhash_spec{}) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const std::string& t : texts_) ptrs.push_back(t.data()), lens.push_back(t.size());
    rules_.assign(texts_.size(), 0);
    cx_status st{};
    if (cx_quality_check(params_.data(), ptrs.data(), lens.data(), presets_.data(), texts_.size(), threads_, rules_.data(), &st) != CX_OK) return SetError(st.message);
    if (hashing_) hash(ptrs, lens);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!hashing_) return deferred_.Resolve(to_js(env, rules_));
    Napi::Object r = Napi::Object::New(env);
    r.Set("rules", to_js(env, rules_));
    r.Set("keys", to_js(env, keys_));
    r.Set("hashed", to_js(env, hashed_));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  /* Band keys of the passing ASCII texts, scattered to their places; the rest stay HASH_NOT_DONE. */
  void hash(const std::vector<const char*>& ptrs, const std::vector<size_t>& lens) {
    const size_t bands = (size_t)std::max(spec_.bands, 0);
    std::vector<size_t> at;
    std::vector<const char*> p;
    std::vector<size_t> l;
    for (size_t i = 0; i < texts_.size(); i++)
      if (rules_[i] == 0 && ascii(texts_[i])) at.push_back(i), p.push_back(ptrs[i]), l.push_back(lens[i]);
    std::vector<uint64_t> keys(at.size() * bands, 0);
    std::vector<uint8_t> shingled(at.size(), 0);
    cx_status st{};
    if (cx_minhash_bands(&spec_, p.data(), l.data(), at.size(), threads_, keys.data(), shingled.data(), &st) != CX_OK) return SetError(st.message);
    keys_.assign(texts_.size() * bands, 0);
    hashed_.assign(texts_.size(), HASH_NOT_DONE);
    for (size_t j = 0; j < at.size(); j++) {
      std::copy(keys.begin() + j * bands, keys.begin() + (j + 1) * bands, keys_.begin() + at[j] * bands);
      hashed_[at[j]] = shingled[j] ? HASH_KEYS : HASH_NO_WORDS;
    }
  }

  Napi::Promise::Deferred deferred_;
  std::vector<double> params_;
  std::vector<std::string> texts_;
  std::vector<uint8_t> presets_;
  int threads_;
  bool hashing_;
  cx_minhash_spec spec_;
  std::vector<uint16_t> rules_;
  std::vector<uint64_t> keys_;
  std::vector<uint8_t> hashed_;
};

/* Checks qualityCheck's arguments (and qualityCheckAndHash's first four); throws and returns false when wrong. */
bool quality_args(const Napi::CallbackInfo& info, const char* usage) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return false;
  }
  if (info[1].As<Napi::Uint8Array>().ElementLength() != info[0].As<Napi::Array>().Length() || (int)info[2].As<Napi::Float64Array>().ElementLength() != cx_quality_param_count()) {
    Napi::RangeError::New(env, "qualityCheck: one preset mask per text and cx_quality_param_count() params").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Value queue_quality(const Napi::CallbackInfo& info, const cx_minhash_spec* hash) {
  Napi::Uint8Array presets = info[1].As<Napi::Uint8Array>();
  Napi::Float64Array params = info[2].As<Napi::Float64Array>();
  auto* worker = new QualityCheck(info.Env(), std::vector<double>(params.Data(), params.Data() + params.ElementLength()), strings(info[0].As<Napi::Array>()),
                                  std::vector<uint8_t>(presets.Data(), presets.Data() + presets.ElementLength()), info[3].As<Napi::Number>().Int32Value(), hash);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

/* qualityCheck(texts: (string | Uint8Array)[], presets: Uint8Array, params: Float64Array, threads) -> Promise<Uint16Array> */
Napi::Value QualityCheckMethod(const Napi::CallbackInfo& info) {
  if (!quality_args(info, "qualityCheck(texts: (string | Uint8Array)[], presets: Uint8Array, params: Float64Array, threads: number)")) return info.Env().Undefined();
  return queue_quality(info, nullptr);
}

/* qualityCheckAndHash(texts, presets, params, threads, spec: {ngram, bands, rows, seed})
 *   -> Promise<{rules: Uint16Array, keys: BigUint64Array, hashed: Uint8Array}> */
Napi::Value QualityCheckAndHashMethod(const Napi::CallbackInfo& info) {
  const char* usage = "qualityCheckAndHash(texts: (string | Uint8Array)[], presets: Uint8Array, params: Float64Array, threads: number, spec: {ngram, bands, rows, seed})";
  if (!quality_args(info, usage)) return info.Env().Undefined();
  if (info.Length() < 5 || !info[4].IsObject()) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  cx_minhash_spec spec = minhash_spec(info[4].As<Napi::Object>());
  return queue_quality(info, &spec);
}

/* qualityTable() -> {params: {name, default}[], rules: string[]}: the C API's tables, for the binding test. */
Napi::Value QualityTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array params = Napi::Array::New(env);
  for (int i = 0; i < cx_quality_param_count(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", cx_quality_param_name(i));
    o.Set("default", cx_quality_param_default(i));
    params.Set(i, o);
  }
  Napi::Array rules = Napi::Array::New(env);
  for (int i = 0; i < cx_quality_rule_count(); i++) rules.Set(i, cx_quality_rule_name(i));
  Napi::Object out = Napi::Object::New(env);
  out.Set("params", params);
  out.Set("rules", rules);
  return out;
}

}  // namespace

namespace cx {
void register_text(Napi::Env env, Napi::Object exports) {
  exports.Set("minhashBands", Napi::Function::New(env, MinhashBandsMethod, "minhashBands"));
  exports.Set("qualityCheck", Napi::Function::New(env, QualityCheckMethod, "qualityCheck"));
  exports.Set("qualityCheckAndHash", Napi::Function::New(env, QualityCheckAndHashMethod, "qualityCheckAndHash"));
  exports.Set("shingleJaccard", Napi::Function::New(env, ShingleJaccardMethod, "shingleJaccard"));
  exports.Set("qualityTable", Napi::Function::New(env, QualityTable, "qualityTable"));
}
}  // namespace cx
