/* RoPE's inverse frequencies and cos/sin scale for a base and a scaling (chuxin.h: cx_rope_scaling), computed once on
 * the host in double, in the order transformers' modeling_rope_utils computes them, and kept in backend memory for the
 * rope ops. The default table is the one the ops used to compute themselves, bit for bit. */
#include <algorithm>
#include <cmath>
#include <vector>

#include "model.h"

namespace cxm {
namespace {

constexpr double kPi = 3.14159265358979323846;

/* The base frequencies: theta^(-2i/D), as the rope ops always took them. */
std::vector<double> base_frequencies(float theta, int64_t D) {
  std::vector<double> f((size_t)(D / 2));
  for (int64_t i = 0; i < D / 2; i++) f[(size_t)i] = std::pow((double)theta, -2.0 * (double)i / (double)D);
  return f;
}

/* YaRN's dimension whose frequency turns `rotations` times over `positions` (find_correction_dim). */
double correction_dim(double rotations, int64_t D, double theta, double positions) {
  return (double)D * std::log(positions / (rotations * 2 * kPi)) / (2 * std::log(theta));
}

}  // namespace

void set_rope_frequencies(cx_model& m, const cx_rope_scaling& s) {
  const cx_config& c = m.cfg;
  const int64_t D = c.hidden / c.n_heads, half = D / 2;
  std::vector<double> f = base_frequencies(c.rope_theta, D);
  float scale = 1.f;
  if (s.type != CX_ROPE_DEFAULT && !(s.factor >= 1.f && std::isfinite(s.factor)))
    fail(CX_INVALID_ARGUMENT, "RoPE scaling factor %g must be 1 or more", (double)s.factor);
  if ((s.type == CX_ROPE_YARN || s.type == CX_ROPE_LLAMA3) && s.original_max_positions < 1)
    fail(CX_INVALID_ARGUMENT, "RoPE scaling needs the original max positions (got %d)", s.original_max_positions);
  switch (s.type) {
    case CX_ROPE_DEFAULT:
      break;
    case CX_ROPE_LINEAR:
      for (double& x : f) x /= (double)s.factor;
      break;
    case CX_ROPE_YARN: {
      const double theta = c.rope_theta, factor = s.factor, original = s.original_max_positions;
      // truncate (transformers' default): the ramp's ends rounded outwards, clamped to the dimensions.
      double low = std::max(0.0, std::floor(correction_dim(s.beta_fast, D, theta, original)));
      double high = std::min((double)(D - 1), std::ceil(correction_dim(s.beta_slow, D, theta, original)));
      if (low == high) high += 0.001;
      for (int64_t i = 0; i < half; i++) {
        const double ramp = std::clamp(((double)i - low) / (high - low), 0.0, 1.0);
        const double extrapolation = 1 - ramp;  // the share kept at the base frequency
        const double base = f[(size_t)i];
        f[(size_t)i] = base / factor * (1 - extrapolation) + base * extrapolation;
      }
      scale = factor <= 1 ? 1.f : (float)(0.1 * std::log(factor) + 1.0);
      break;
    }
    case CX_ROPE_LLAMA3: {
      if (!(s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0))
        fail(CX_INVALID_ARGUMENT, "llama3 RoPE scaling needs 0 < low_freq_factor < high_freq_factor (got %g, %g)", (double)s.low_freq_factor,
             (double)s.high_freq_factor);
      const double original = s.original_max_positions, factor = s.factor;
      const double low_wavelength = original / s.low_freq_factor, high_wavelength = original / s.high_freq_factor;
      for (double& x : f) {
        const double wavelength = 2 * kPi / x;
        if (wavelength < high_wavelength) continue;
        if (wavelength > low_wavelength) {
          x /= factor;
          continue;
        }
        const double smooth = (original / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        x = (1 - smooth) * x / factor + smooth * x;
      }
      break;
    }
    default:
      fail(CX_INVALID_ARGUMENT, "unknown RoPE scaling type %d (0 default, 1 linear, 2 yarn, 3 llama3)", s.type);
  }
  m.rope_inv_freq.ensure(m.be.get(), (size_t)half, DType::F64, "RoPE frequencies");
  m.be->upload(m.rope_inv_freq.t, f.data(), (size_t)half);
  m.rope_host.assign(f.begin(), f.end());
  m.rope_scale = scale;
  m.rope_scaling = s;
}

}  // namespace cxm
