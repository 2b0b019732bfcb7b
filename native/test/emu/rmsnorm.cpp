/* rmsnorm.cu built as C++ under the CUDA emulation (cuda_emu.h is force-included by CMake). */
#include "../../src/cuda/rmsnorm.cu"
