/* N-API binding: a Model object whose heavy calls run on worker threads and return Promises, so
 * training never blocks the event loop. Failures become JS errors with a `code`. */
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "../../include/chuxin.h"
#include "../cpu/gemm.h"
#include "common.h"
#include "options.h"

namespace {

using cx_binding::make_error;
using cx_binding::Fields;
using cx_binding::adamw_options;
using cx_binding::run_options;
using cx_binding::tokens_arg;

class Model;

/* Runs `work` off the main thread; `done` builds the resolved value. */
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::atomic<bool>* busy, std::function<int(cx_status*)> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), busy_(busy), work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { work_(&status_); }
  void OnOK() override {
    busy_->store(false);
    Napi::HandleScope scope(Env());
    if (status_.code != CX_OK) deferred_.Reject(make_error(Env(), status_).Value());
    else deferred_.Resolve(done_(Env()));
  }
  void OnError(const Napi::Error& e) override {
    busy_->store(false);
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::atomic<bool>* busy_;
  std::function<int(cx_status*)> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  cx_status status_{0, ""};
};

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("init", &Model::Init), InstanceMethod("tensors", &Model::Tensors),
                        InstanceMethod("getTensor", &Model::GetTensor), InstanceMethod("setTensor", &Model::SetTensor),
                        InstanceMethod("forwardBackward", &Model::ForwardBackward), InstanceMethod("forwardLosses", &Model::ForwardLosses),
                        InstanceMethod("lastLogits", &Model::LastLogits),
                        InstanceMethod("logitsAt", &Model::LogitsAt), InstanceMethod("decodeReset", &Model::DecodeReset),
                        InstanceMethod("decodeStep", &Model::DecodeStep), InstanceMethod("zeroGrad", &Model::ZeroGrad),
                        InstanceMethod("gradNorm", &Model::GradNorm), InstanceMethod("adamwStep", &Model::AdamwStep),
                        InstanceMethod("clipAdamwStep", &Model::ClipAdamwStep),
                        InstanceMethod("dataParallel", &Model::DataParallel),
                        InstanceMethod("contextParallel", &Model::ContextParallel),
                        InstanceMethod("replicasIdentical", &Model::ReplicasIdentical),
                        InstanceMethod("backend", &Model::BackendName), InstanceMethod("memory", &Model::Memory),
                        InstanceMethod("activationBytes", &Model::ActivationBytes), InstanceMethod("deviceMemory", &Model::DeviceMemory),
                        InstanceMethod("ropeFrequencies", &Model::RopeFrequencies),
                        InstanceMethod("dispose", &Model::Dispose)});
  }

  Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "new Model(config, backend, threads): config must be an object").ThrowAsJavaScriptException();
      return;
    }
    Fields c(info[0], "ModelConfig");
    cx_config cfg{c.integer("nLayers"), c.integer("hidden"), c.integer("nHeads"), c.integer("ffn"), c.integer("vocab"),
                  c.integer("maxSeq"), c.real("ropeTheta"), c.real("normEps")};
    const Napi::Value scaling = c.optional("ropeScaling");
    head_size_ = cfg.n_heads > 0 ? cfg.hidden / cfg.n_heads : 0;
    c.done();
    const cx_rope_scaling rope = scaling.IsUndefined() ? cx_rope_scaling{CX_ROPE_DEFAULT, 1.f, 0, 0.f, 0.f, 0.f, 0.f} : cx_binding::rope_scaling(scaling);
    std::string backend = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "cpu";
    int threads = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
    cx_status st{0, ""};
    if (cx_model_create(&cfg, backend.c_str(), threads, &model_, &st) != CX_OK) {
      make_error(env, st).ThrowAsJavaScriptException();
      return;
    }
    if (cx_model_set_rope_scaling(model_, &rope, &st) != CX_OK) {
      cx_model_free(model_);
      model_ = nullptr;
      make_error(env, st).ThrowAsJavaScriptException();
    }
  }
  ~Model() override {
    if (model_) cx_model_free(model_);
  }

 private:
  bool ready(Napi::Env env) {
    if (!model_) {
      Napi::Error::New(env, "model is disposed").ThrowAsJavaScriptException();
      return false;
    }
    if (busy_.load()) {
      Napi::Error::New(env, "model is busy: await the previous call first").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  Napi::Value Run(Napi::Env env, std::function<int(cx_status*)> work, std::function<Napi::Value(Napi::Env)> done) {
    busy_.store(true);
    auto* job = new Job(env, &busy_, std::move(work), std::move(done));
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }

  Napi::Value Sync(Napi::Env env, int code, const cx_status& st) {
    if (code != CX_OK) make_error(env, st).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Value Init(const Napi::CallbackInfo& info) {
    if (!ready(info.Env())) return info.Env().Undefined();
    cx_status st{0, ""};
    uint64_t seed = info[0].IsNumber() ? (uint64_t)info[0].As<Napi::Number>().Int64Value() : 0;
    return Sync(info.Env(), cx_model_init(model_, seed, &st), st);
  }

  Napi::Value Tensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!model_) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    for (int i = 0; i < cx_tensor_count(model_); i++) {
      int64_t rows, cols;
      cx_tensor_shape(model_, i, &rows, &cols);
      Napi::Object t = Napi::Object::New(env);
      t.Set("name", cx_tensor_name(model_, i));
      t.Set("rows", (double)rows);
      t.Set("cols", (double)cols);
      out.Set(i, t);
    }
    return out;
  }

  Napi::Value GetTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    int kind = info[0].As<Napi::Number>().Int32Value(), index = info[1].As<Napi::Number>().Int32Value();
    if (index < 0 || index >= cx_tensor_count(model_)) {
      Napi::RangeError::New(env, "tensor index out of range").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int64_t rows, cols;
    cx_tensor_shape(model_, index, &rows, &cols);
    Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(rows * cols));
    cx_status st{0, ""};
    if (cx_tensor_get(model_, kind, index, out.Data(), &st) != CX_OK) return Sync(env, st.code, st);
    return out;
  }

  Napi::Value SetTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    int kind = info[0].As<Napi::Number>().Int32Value(), index = info[1].As<Napi::Number>().Int32Value();
    Napi::Float32Array data = info[2].As<Napi::Float32Array>();
    if (index < 0 || index >= cx_tensor_count(model_)) {
      Napi::RangeError::New(env, "tensor index out of range").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int64_t rows, cols;
    cx_tensor_shape(model_, index, &rows, &cols);
    if ((int64_t)data.ElementLength() != rows * cols) {
      Napi::RangeError::New(env, std::string(cx_tensor_name(model_, index)) + ": expected " + std::to_string(rows * cols) + " values, got " +
                                     std::to_string(data.ElementLength()))
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    cx_status st{0, ""};
    return Sync(env, cx_tensor_set(model_, kind, index, data.Data(), &st), st);
  }

  Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    auto tokens = std::make_shared<std::vector<int32_t>>();
    int B, T;
    if (!tokens_arg(info, *tokens, B, T)) return env.Undefined();
    cx_run_options o = run_options(info[3]);
    float scale = info[4].IsNumber() ? info[4].As<Napi::Number>().FloatValue() : 1.f;
    const int reduce = info[5].IsBoolean() && info[5].As<Napi::Boolean>().Value() ? 1 : 0;
    auto sum = std::make_shared<double>(0);
    auto count = std::make_shared<int64_t>(0);
    cx_model* m = model_;
    return Run(
        env, [=](cx_status* st) { return cx_forward_backward(m, tokens->data(), B, T, &o, scale, reduce, sum.get(), count.get(), st); },
        [=](Napi::Env e) {
          Napi::Object r = Napi::Object::New(e);
          r.Set("lossSum", *sum);
          r.Set("count", (double)*count);
          return r;
        });
  }

  static Napi::Float32Array ToFloat32Array(Napi::Env env, const std::vector<float>& values) {
    Napi::Float32Array a = Napi::Float32Array::New(env, values.size());
    std::memcpy(a.Data(), values.data(), values.size() * sizeof(float));
    return a;
  }

  /* A forward pass that fills a float array of `size(B, T)` values, resolved as a Float32Array. */
  template <typename Forward>
  Napi::Value ForwardToArray(const Napi::CallbackInfo& info, size_t (*size)(cx_model*, int, int), Forward forward) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    auto tokens = std::make_shared<std::vector<int32_t>>();
    int B, T;
    if (!tokens_arg(info, *tokens, B, T)) return env.Undefined();
    const cx_run_options o = run_options(info[3]);
    cx_model* m = model_;
    auto out = std::make_shared<std::vector<float>>(size(m, B, T));
    return Run(
        env, [=](cx_status* st) { return forward(m, tokens->data(), B, T, &o, out->data(), st); },
        [=](Napi::Env e) { return ToFloat32Array(e, *out); });
  }

  Napi::Value ForwardLosses(const Napi::CallbackInfo& info) {
    return ForwardToArray(info, [](cx_model*, int B, int T) { return (size_t)B * T; }, cx_forward_losses);
  }

  Napi::Value LastLogits(const Napi::CallbackInfo& info) {
    auto vocab_rows = [](cx_model* m, int B, int) {
      int64_t rows, cols;
      cx_tensor_shape(m, cx_tensor_count(m) - 1, &rows, &cols);  // lm_head.weight: [vocab][hidden]
      return (size_t)B * (size_t)rows;
    };
    return ForwardToArray(info, vocab_rows, cx_forward_last_logits);
  }

  /* logitsAt(tokens, B, T, options, positions: Int32Array) → Float32Array [positions.length][vocab]. */
  Napi::Value LogitsAt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    auto tokens = std::make_shared<std::vector<int32_t>>();
    int B, T;
    if (!tokens_arg(info, *tokens, B, T)) return env.Undefined();
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "positions must be an Int32Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Int32Array pos = info[4].As<Napi::Int32Array>();
    auto positions = std::make_shared<std::vector<int32_t>>(pos.Data(), pos.Data() + pos.ElementLength());
    const cx_run_options o = run_options(info[3]);
    cx_model* m = model_;
    int64_t vocab, cols;
    cx_tensor_shape(m, cx_tensor_count(m) - 1, &vocab, &cols);  // lm_head.weight: [vocab][hidden]
    auto out = std::make_shared<std::vector<float>>(positions->size() * (size_t)vocab);
    return Run(
        env, [=](cx_status* st) { return cx_forward_logits_at(m, tokens->data(), B, T, &o, positions->data(), (int)positions->size(), out->data(), st); },
        [=](Napi::Env e) { return ToFloat32Array(e, *out); });
  }

  Napi::Value DecodeReset(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    cx_status st{0, ""};
    return Sync(env, cx_decode_reset(model_, info[0].As<Napi::Number>().Int32Value(), &st), st);
  }

  /* decodeStep(tokens: Int32Array, options) → Float32Array [vocab]: the logits after the last new token. */
  Napi::Value DecodeStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "tokens must be an Int32Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Int32Array t = info[0].As<Napi::Int32Array>();
    auto tokens = std::make_shared<std::vector<int32_t>>(t.Data(), t.Data() + t.ElementLength());
    const cx_run_options o = run_options(info[1]);
    cx_model* m = model_;
    int64_t vocab, cols;
    cx_tensor_shape(m, cx_tensor_count(m) - 1, &vocab, &cols);
    auto out = std::make_shared<std::vector<float>>((size_t)vocab);
    return Run(
        env, [=](cx_status* st) { return cx_decode_step(m, tokens->data(), (int)tokens->size(), &o, out->data(), st); },
        [=](Napi::Env e) { return ToFloat32Array(e, *out); });
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    if (!ready(info.Env())) return info.Env().Undefined();
    cx_status st{0, ""};
    return Sync(info.Env(), cx_zero_grad(model_, &st), st);
  }

  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    auto norm = std::make_shared<double>(0);
    cx_model* m = model_;
    return Run(env, [=](cx_status* st) { return cx_grad_norm(m, norm.get(), st); }, [=](Napi::Env e) { return Napi::Number::New(e, *norm); });
  }

  Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    const cx_adamw hp = adamw_options(info[0], true);
    cx_model* m = model_;
    return Run(env, [=](cx_status* st) { return cx_adamw_step(m, &hp, st); }, [](Napi::Env e) { return e.Undefined(); });
  }

  /* ropeFrequencies() → { invFreq: Float64Array [head size / 2], scale }: what RoPE rotates by. */
  Napi::Value RopeFrequencies(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    cx_status st{0, ""};
    auto freq = Napi::Float64Array::New(env, (size_t)(head_size_ / 2));
    float scale = 1.f;
    if (cx_model_rope_frequencies(model_, freq.Data(), &scale, &st) != CX_OK) {
      make_error(env, st).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("invFreq", freq);
    out.Set("scale", Napi::Number::New(env, scale));
    return out;
  }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    size_t states = 0, activations = 0;
    cx_model_memory(model_, &states, &activations);
    Napi::Object out = Napi::Object::New(env);
    out.Set("states", Napi::Number::New(env, (double)states));
    out.Set("activations", Napi::Number::New(env, (double)activations));
    return out;
  }

  /* activationBytes(tokens, precision, recompute) → bytes a micro-batch of that many tokens needs. */
  Napi::Value ActivationBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || info[0].As<Napi::Number>().Int64Value() < 1) {
      Napi::TypeError::New(env, "activationBytes(tokens >= 1, precision, recompute)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const size_t bytes = cx_model_activation_bytes(model_, info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Number>().Int32Value(),
                                                   info[2].As<Napi::Number>().Int32Value());
    return Napi::Number::New(env, (double)bytes);
  }

  /* deviceMemory() → { free, total } in bytes, or null where the backend cannot tell (the CPU). */
  Napi::Value DeviceMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    size_t free_b = 0, total_b = 0;
    if (!cx_model_device_memory(model_, &free_b, &total_b)) return env.Null();
    Napi::Object out = Napi::Object::New(env);
    out.Set("free", Napi::Number::New(env, (double)free_b));
    out.Set("total", Napi::Number::New(env, (double)total_b));
    return out;
  }

  /* clipAdamwStep(hp, maxNorm) → the gradient norm; the weights did not move if it is not finite. */
  Napi::Value ClipAdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    if (!info[0].IsObject() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "clipAdamwStep(hp, maxNorm)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const cx_adamw hp = adamw_options(info[0], false);
    const float max_norm = info[1].As<Napi::Number>().FloatValue();
    auto norm = std::make_shared<double>(0);
    cx_model* m = model_;
    return Run(env, [=](cx_status* st) { return cx_clip_adamw_step(m, &hp, max_norm, norm.get(), st); },
               [=](Napi::Env e) { return Napi::Number::New(e, *norm); });
  }

  /* dataParallel(comm, zero): cx_model_data_parallel. The communicator must outlive the model. */
  Napi::Value DataParallel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    cx_comm* comm = cx_binding::comm_handle(info[0]);
    if (!comm) return env.Undefined();
    cx_status st{0, ""};
    return Sync(env, cx_model_data_parallel(model_, comm, info[1].As<Napi::Number>().Int32Value(), &st), st);
  }

  /* contextParallel(comm | null): cx_model_context_parallel, over the ring comm's topology puts this rank in. The
   * communicator must outlive the model. */
  Napi::Value ContextParallel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    cx_comm* comm = nullptr;
    if (!info[0].IsNull() && !(comm = cx_binding::comm_handle(info[0]))) return env.Undefined();
    cx_status st{0, ""};
    return Sync(env, cx_model_context_parallel(model_, comm, &st), st);
  }

  /* replicasIdentical() → {identical, digest (hex)}: collective. */
  Napi::Value ReplicasIdentical(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    auto identical = std::make_shared<int>(0);
    auto digest = std::make_shared<uint64_t>(0);
    cx_model* m = model_;
    return Run(env, [=](cx_status* st) { return cx_model_replicas_identical(m, identical.get(), digest.get(), st); },
               [=](Napi::Env e) {
                 char hex[17];
                 snprintf(hex, sizeof hex, "%016llx", (unsigned long long)*digest);
                 Napi::Object out = Napi::Object::New(e);
                 out.Set("identical", Napi::Boolean::New(e, *identical != 0));
                 out.Set("digest", Napi::String::New(e, hex));
                 return out;
               });
  }

  Napi::Value BackendName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), model_ ? cx_model_backend(model_) : "disposed");
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (!ready(info.Env())) return info.Env().Undefined();
    cx_model_free(model_);
    model_ = nullptr;
    return info.Env().Undefined();
  }

  cx_model* model_ = nullptr;
  int head_size_ = 0;
  std::atomic<bool> busy_{false};
};

}  // namespace

namespace cx {
void register_tokenizer(Napi::Env env, Napi::Object exports);
void register_text(Napi::Env env, Napi::Object exports);
}

namespace {

using cx_binding::make_error;
using cx_binding::Fields;
using cx_binding::adamw_options;
using cx_binding::run_options;
using cx_binding::tokens_arg;

/* targetMask(tokens, B, T, options, comm?): cx_target_mask as a Uint8Array (this rank's positions under comm's rings). */
Napi::Value TargetMask(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int32_t> tokens;
  int B, T;
  if (!tokens_arg(info, tokens, B, T)) return env.Undefined();
  const cx_run_options o = run_options(info[3]);
  cx_comm* comm = nullptr;
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull() && !(comm = cx_binding::comm_handle(info[4]))) return env.Undefined();
  Napi::Uint8Array mask = Napi::Uint8Array::New(env, tokens.size());
  cx_status st{};
  if (cx_target_mask(tokens.data(), B, T, &o, comm, mask.Data(), &st) != CX_OK) {
    Napi::Error::New(env, st.message).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return mask;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", Model::Define(env));
  exports.Set("targetMask", Napi::Function::New(env, TargetMask, "targetMask"));
  cx::register_tokenizer(env, exports);
  cx::register_text(env, exports);
  cx_binding::register_comm(env, exports);
  exports.Set("cpuKernel", Napi::String::New(env, cx::sgemm_kernel_name()));
  exports.Set("cudaDeviceCount", Napi::Function::New(
                                     env, [](const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cx_cuda_device_count()); },
                                     "cudaDeviceCount"));
  exports.Set("dieWithParent", Napi::Function::New(
                                   env,
                                   [](const Napi::CallbackInfo& info) {
                                     return Napi::Number::New(info.Env(), cx_die_with_parent(info[0].As<Napi::Number>().Int32Value()));
                                   },
                                   "dieWithParent"));
  exports.Set("buildInfo", Napi::Function::New(
                               env, [](const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cx_build_info()); }, "buildInfo"));
  exports.Set("probeLibrary", Napi::Function::New(
                                  env,
                                  [](const Napi::CallbackInfo& info) {
                                    std::string name = info[0].As<Napi::String>().Utf8Value();
                                    std::vector<char> buf(4096);
                                    int found = cx_probe_library(name.c_str(), buf.data(), buf.size());
                                    Napi::Object out = Napi::Object::New(info.Env());
                                    out.Set("found", Napi::Boolean::New(info.Env(), found == 1));
                                    out.Set("detail", Napi::String::New(info.Env(), buf.data()));
                                    return out;
                                  },
                                  "probeLibrary"));
#ifdef CX_WITH_CUDA
  exports.Set("cudaCompiled", Napi::Boolean::New(env, true));
#else
  exports.Set("cudaCompiled", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(chuxin, InitModule)
