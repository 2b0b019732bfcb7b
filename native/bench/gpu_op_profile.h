#pragma once
/* The per-op time profile of a bf16 training micro-step (gpu_op_profile.cpp). */
#include <cstdint>
#include <vector>

#include "../src/model/backend.h"

struct ProfileDims {
  int64_t L, C, H, F, V, T;
};

/* Prints the table; a failure inside is reported and the caller goes on. */
void op_profile(const ProfileDims& dims, const std::vector<int32_t>& row, int eos);
