#pragma once
/* How every C API entry point reports: a body that throws becomes a status code and message, never an exit. */
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>

#include "../../include/chuxin.h"

namespace cx {

/* An error with the status code it should become. */
struct Failure : std::runtime_error {
  int code;
  Failure(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

inline int set_status(cx_status* status, int code, const char* message) {
  if (status) {
    status->code = code;
    snprintf(status->message, sizeof status->message, "%s", message);
  }
  return code;
}

/* Runs body; a Failure keeps its code, std::invalid_argument is CX_INVALID_ARGUMENT, bad_alloc
 * CX_OUT_OF_MEMORY, anything else CX_INTERNAL. */
template <typename F>
int guarded(cx_status* status, F&& body) {
  try {
    body();
    return set_status(status, CX_OK, "");
  } catch (const Failure& f) {
    return set_status(status, f.code, f.what());
  } catch (const std::invalid_argument& e) {
    return set_status(status, CX_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return set_status(status, CX_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    return set_status(status, CX_INTERNAL, e.what());
  }
}

}  // namespace cx
