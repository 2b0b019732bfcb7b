#pragma once
/* What the binding's files share: a C API status as a JS error with a `code`, and the communicator handle. */
#include <napi.h>

#include "../../include/chuxin.h"

namespace cx_binding {

inline const char* code_name(int code) {
  switch (code) {
    case CX_INVALID_ARGUMENT: return "CX_INVALID_ARGUMENT";
    case CX_OUT_OF_MEMORY: return "CX_OUT_OF_MEMORY";
    case CX_BACKEND_UNAVAILABLE: return "CX_BACKEND_UNAVAILABLE";
    case CX_NUMERIC: return "CX_NUMERIC";
    default: return "CX_INTERNAL";
  }
}

inline Napi::Error make_error(Napi::Env env, const cx_status& st) {
  Napi::Error e = Napi::Error::New(env, st.message);
  e.Set("code", Napi::String::New(env, code_name(st.code)));
  return e;
}

/* The cx_comm of a Communicator object (comm_binding.cpp), or nullptr with a JS exception pending. */
cx_comm* comm_handle(const Napi::Value& value);
void register_comm(Napi::Env env, Napi::Object exports);

}  // namespace cx_binding
