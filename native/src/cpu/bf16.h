#pragma once
#include <cstdint>
#include <cstring>

namespace cx {

/* Round-to-nearest-even to bf16, returned as fp32: what a GPU kernel storing __nv_bfloat16 keeps. */
inline float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    if (u & 0x007fffffu) u |= 0x00400000u;  // keep NaN a (quiet) NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
  }
  u &= 0xffff0000u;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

inline float maybe_bf16(float x, bool bf16) { return bf16 ? round_bf16(x) : x; }

}  // namespace cx
