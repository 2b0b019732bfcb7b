/* Built without CUDA: NCCL reduces GPU memory, so there is nothing for it to run on. */
#include "communicator.h"

namespace cx {

Communicator* create_nccl_communicator(const CommOptions&, std::string* why) {
  *why = "this addon was built without CUDA (nvcc was not found at build time), and NCCL reduces GPU memory; rebuild on a machine with the "
         "CUDA toolkit, or use gloo on CPUs";
  return nullptr;
}

}  // namespace cx
