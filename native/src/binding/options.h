#pragma once
/* The binding's argument readers: an options object read exactly as the C API struct it fills (every key
 * required, unknown keys refused; defaults live in TypeScript), and token batches. Included by addon.cpp only. */
#include <napi.h>

#include <string>
#include <vector>

#include "../../include/chuxin.h"

namespace cx_binding {

/*
 * Reads an options object exactly as the C API struct it fills: every key is required and must be a number, and a
 * key the struct does not have is an error. Defaults live in TypeScript only; a misspelt key never falls back to one.
 */
class Fields {
 public:
  Fields(const Napi::Value& v, const char* what) : what_(what) {
    if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), what_ + " must be an object");
    obj_ = v.As<Napi::Object>();
  }
  double number(const char* key) {
    seen_.push_back(key);
    if (!obj_.Has(key)) throw Napi::TypeError::New(obj_.Env(), what_ + ": missing key '" + key + "'");
    Napi::Value v = obj_.Get(key);
    if (!v.IsNumber()) throw Napi::TypeError::New(obj_.Env(), what_ + "." + key + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  int integer(const char* key) {
    const double v = number(key);
    if (v != (double)(int)v) throw Napi::TypeError::New(obj_.Env(), what_ + "." + key + " must be an integer");
    return (int)v;
  }
  float real(const char* key) { return (float)number(key); }
  /* A key that may be absent (undefined): its value, or undefined. */
  Napi::Value optional(const char* key) {
    seen_.push_back(key);
    return obj_.Has(key) ? obj_.Get(key) : obj_.Env().Undefined();
  }
  /* After every field is read: any other key is a mistake in the caller. */
  void done() {
    Napi::Array names = obj_.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      if (std::find(seen_.begin(), seen_.end(), name) == seen_.end()) {
        std::string known;
        for (const std::string& k : seen_) known += (known.empty() ? "" : ", ") + k;
        throw Napi::TypeError::New(obj_.Env(), what_ + ": unknown key '" + name + "' (it has: " + known + ")");
      }
    }
  }

 private:
  std::string what_;
  Napi::Object obj_;
  std::vector<std::string> seen_;
};

/* ModelConfig.ropeScaling (type as cx_rope_type). */
inline cx_rope_scaling rope_scaling(const Napi::Value& v) {
  Fields f(v, "ModelConfig.ropeScaling");
  cx_rope_scaling s{f.integer("type"), f.real("factor"), f.integer("originalMaxPositions"), f.real("lowFreqFactor"), f.real("highFreqFactor"),
                    f.real("betaFast"), f.real("betaSlow")};
  f.done();
  return s;
}

inline cx_run_options run_options(const Napi::Value& v) {
  Fields f(v, "RunOptions");
  cx_run_options o{f.integer("precision"), f.integer("docMask"), f.integer("resetPositions"), f.integer("maskEosLoss"), f.integer("eosId"),
                   f.integer("recompute")};
  f.done();
  return o;
}

/* AdamW hyperparameters; `grad_scale` is read only where the caller scales the gradients itself (adamwStep). */
inline cx_adamw adamw_options(const Napi::Value& v, bool with_grad_scale) {
  Fields f(v, "AdamW options");
  cx_adamw hp{f.real("lr"), f.real("beta1"), f.real("beta2"), f.real("eps"), f.real("weightDecay"), 1.f, 0, 0};
  if (with_grad_scale) hp.grad_scale = f.real("gradScale");
  hp.step = f.integer("step");
  hp.decay_embeddings = f.integer("decayEmbeddings");
  f.done();
  return hp;
}

/* tokens [B][T] from (Int32Array, B, T) arguments; false with a JS exception pending when they do not fit. */
inline bool tokens_arg(const Napi::CallbackInfo& info, std::vector<int32_t>& tokens, int& B, int& T) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Napi::TypeError::New(env, "tokens must be an Int32Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Int32Array a = info[0].As<Napi::Int32Array>();
  B = info[1].As<Napi::Number>().Int32Value();
  T = info[2].As<Napi::Number>().Int32Value();
  if (B <= 0 || T <= 0 || (size_t)B * (size_t)T != a.ElementLength()) {
    Napi::RangeError::New(env, "tokens must hold exactly B*T ids").ThrowAsJavaScriptException();
    return false;
  }
  tokens.assign(a.Data(), a.Data() + a.ElementLength());
  return true;
}

}  // namespace cx_binding
