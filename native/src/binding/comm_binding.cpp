/* N-API mirror of the communicator's C API: joining and every collective run on worker threads (they wait on
 * other processes), so a rank's event loop keeps serving signals while it waits. */
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace cx_binding {

namespace {

/* Runs a C API call off the main thread and settles a Promise with its status. */
class CommJob : public Napi::AsyncWorker {
 public:
  CommJob(Napi::Env env, std::function<int(cx_status*)> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { work_(&status_); }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (status_.code != CX_OK) deferred_.Reject(make_error(Env(), status_).Value());
    else deferred_.Resolve(done_(Env()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<int(cx_status*)> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  cx_status status_{0, ""};
};

Napi::Value queue(Napi::Env env, std::function<int(cx_status*)> work, std::function<Napi::Value(Napi::Env)> done) {
  auto* job = new CommJob(env, std::move(work), std::move(done));
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Napi::Value undefined(Napi::Env env) { return env.Undefined(); }

Napi::Object topology_object(Napi::Env env, const cx_topology& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("world", t.world), o.Set("rank", t.rank), o.Set("ringSize", t.ring_size);
  o.Set("ringIndex", t.ring_index), o.Set("dataRank", t.data_rank), o.Set("dataRanks", t.data_ranks);
  return o;
}

/* topology(world, rank, ringSize): cx_topology_make, for a run without a communicator. */
Napi::Value MakeTopology(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "topology(world: number, rank: number, ringSize: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  cx_topology t{};
  cx_status st{0, ""};
  if (cx_topology_make(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), &t,
                       &st) != CX_OK) {
    make_error(env, st).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return topology_object(env, t);
}

class Communicator : public Napi::ObjectWrap<Communicator> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Define(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Communicator",
                                   {InstanceMethod("allReduce", &Communicator::AllReduce), InstanceMethod("broadcast", &Communicator::Broadcast),
                                    InstanceMethod("barrier", &Communicator::Barrier), InstanceMethod("library", &Communicator::Library),
                                    InstanceMethod("contextParallel", &Communicator::ContextParallel),
                                    InstanceMethod("topology", &Communicator::Topology),
                                    InstanceMethod("dispose", &Communicator::Dispose)});
    constructor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  /* Not called from JS: joinCommunicator() makes one around a joined handle. */
  Communicator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Communicator>(info) {
    if (info.Length() == 1 && info[0].IsExternal()) comm_ = info[0].As<Napi::External<cx_comm>>().Data();
  }
  ~Communicator() override {
    if (comm_) cx_comm_free(comm_);
  }

  cx_comm* comm_ = nullptr;

 private:
  bool ready(Napi::Env env) {
    if (comm_) return true;
    Napi::Error::New(env, "communicator is disposed").ThrowAsJavaScriptException();
    return false;
  }

  /* allReduce(Float64Array) → the array summed over the ranks, in place. */
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      Napi::TypeError::New(env, "allReduce(values: Float64Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Float64Array values = info[0].As<Napi::Float64Array>();
    auto ref = std::make_shared<Napi::Reference<Napi::Float64Array>>(Napi::Persistent(values));
    double* data = values.Data();
    const size_t n = values.ElementLength();
    cx_comm* c = comm_;
    return queue(env, [=](cx_status* st) { return cx_comm_all_reduce_host(c, data, n, st); }, [ref](Napi::Env e) { return ref->Value(); });
  }

  /* broadcast(Uint8Array, root): root's bytes into every rank's array. */
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "broadcast(bytes: Uint8Array, root: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    auto ref = std::make_shared<Napi::Reference<Napi::Uint8Array>>(Napi::Persistent(bytes));
    uint8_t* data = bytes.Data();
    const size_t n = bytes.ElementLength();
    const int root = info[1].As<Napi::Number>().Int32Value();
    cx_comm* c = comm_;
    return queue(env, [=](cx_status* st) { return cx_comm_broadcast_host(c, data, n, root, st); }, [ref](Napi::Env e) { return ref->Value(); });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    cx_comm* c = comm_;
    return queue(env, [=](cx_status* st) { return cx_comm_barrier(c, st); }, undefined);
  }

  /* contextParallel(ringSize): cx_comm_context_parallel; throws, with the fix, when it does not divide the world. */
  Napi::Value ContextParallel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    if (!info[0].IsNumber()) {
      Napi::TypeError::New(env, "contextParallel(ringSize: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    cx_status st{0, ""};
    if (cx_comm_context_parallel(comm_, info[0].As<Napi::Number>().Int32Value(), &st) != CX_OK) make_error(env, st).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  /* topology(): cx_comm_topology. */
  Napi::Value Topology(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ready(env)) return env.Undefined();
    cx_topology t{};
    cx_status st{0, ""};
    if (cx_comm_topology(comm_, &t, &st) != CX_OK) {
      make_error(env, st).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return topology_object(env, t);
  }

  Napi::Value Library(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), comm_ ? cx_comm_library(comm_) : "disposed"); }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (comm_) cx_comm_free(comm_);
    comm_ = nullptr;
    return info.Env().Undefined();
  }
};

Napi::FunctionReference* Communicator::constructor = nullptr;

std::string string_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("CommOptions.") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

int int_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("CommOptions.") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

/* joinCommunicator({library, rank, world, masterAddr, masterPort, timeoutMs, device}) → Promise<Communicator>,
 * once every rank has joined. The options object must carry exactly those keys. */
Napi::Value JoinCommunicator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "joinCommunicator(options) needs an options object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  static const std::vector<std::string> keys = {"library", "rank", "world", "masterAddr", "masterPort", "timeoutMs", "device"};
  Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    const std::string k = names.Get(i).As<Napi::String>().Utf8Value();
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      Napi::TypeError::New(env, "CommOptions: unknown key '" + k + "'").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  struct Joined {
    std::string library, addr;
    cx_comm_options options{};
    cx_comm* comm = nullptr;
  };
  auto j = std::make_shared<Joined>();
  j->library = string_field(o, "library");
  j->addr = string_field(o, "masterAddr");
  j->options = {nullptr, int_field(o, "rank"), int_field(o, "world"), nullptr, int_field(o, "masterPort"), int_field(o, "timeoutMs"),
                int_field(o, "device")};
  return queue(
      env,
      [j](cx_status* st) {
        j->options.library = j->library.c_str();
        j->options.master_addr = j->addr.c_str();
        return cx_comm_create(&j->options, &j->comm, st);
      },
      [j](Napi::Env e) {
        Napi::Object obj = Communicator::constructor->New({Napi::External<cx_comm>::New(e, j->comm)});
        j->comm = nullptr;
        return obj;
      });
}

}  // namespace

cx_comm* comm_handle(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Communicator::constructor->Value())) {
    Napi::TypeError::New(env, "expected a Communicator (joinCommunicator)").ThrowAsJavaScriptException();
    return nullptr;
  }
  Communicator* c = Communicator::Unwrap(value.As<Napi::Object>());
  if (!c->comm_) Napi::Error::New(env, "communicator is disposed").ThrowAsJavaScriptException();
  return c->comm_;
}

void register_comm(Napi::Env env, Napi::Object exports) {
  exports.Set("Communicator", Communicator::Define(env));
  exports.Set("joinCommunicator", Napi::Function::New(env, JoinCommunicator, "joinCommunicator"));
  exports.Set("topology", Napi::Function::New(env, MakeTopology, "topology"));
}

}  // namespace cx_binding
