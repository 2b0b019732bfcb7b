/* Built when nvcc is not found: the CUDA backend says why it is missing instead of failing at load. */
#include <string>

#include "../model/backend.h"

namespace cx {

Backend* create_cuda_backend(std::string* why, bool, int) {
  if (why) *why = "this addon was built without CUDA (nvcc was not found at build time); rebuild on a machine with the CUDA toolkit";
  return nullptr;
}

int cuda_device_count() { return -1; }

}  // namespace cx
