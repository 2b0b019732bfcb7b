#pragma once
/* A typed view of backend memory: where it is (host or a CUDA device), what it holds (fp32, packed bf16, int32,
 * fp64) and its shape. Views are small values passed by copy; they never own memory (Buffer in model.h does).
 * Offsetting a view counts elements of its own type, so a packed bf16 tensor is never addressed as floats. */
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace cx {

enum class DType : uint8_t { F32, BF16, I32, F64 };

constexpr size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : t == DType::F64 ? 8 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "fp32";
    case DType::BF16: return "bf16";
    case DType::I32: return "int32";
    case DType::F64: return "fp64";
  }
  return "?";
}

/* The element type a C++ type stands for; the CUDA side adds __nv_bfloat16 (cuda/kernels.h). Host code sees
 * packed bf16 only as raw bits (uint16_t). */
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct dtype_of<uint16_t> {
  static constexpr DType value = DType::BF16;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::F64;
};

constexpr int kHost = -1;  // Tensor::device of host memory; otherwise the CUDA device ordinal

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;  // a flat run of n elements is 1 x n
  int device = kHost;

  Tensor() = default;
  Tensor(std::nullptr_t) {}  // an absent optional operand
  Tensor(void* d, DType t, int64_t n, int dev) : data(d), dtype(t), rows(1), cols(n), device(dev) {}

  int64_t numel() const { return rows * cols; }
  size_t bytes() const { return (size_t)numel() * dtype_size(dtype); }
  explicit operator bool() const { return data != nullptr; }
  bool same_memory(const Tensor& o) const { return data == o.data; }

  /* The view from element k to the end of this one, in this view's element type. */
  Tensor operator+(int64_t k) const {
    if (k < 0 || k > numel()) throw std::out_of_range("tensor view offset " + std::to_string(k) + " outside " + std::to_string(numel()) + " elements");
    Tensor t = *this;
    t.data = static_cast<char*>(data) + (size_t)k * dtype_size(dtype);
    if (cols > 0 && k % cols == 0) t.rows = rows - k / cols;
    else t.rows = 1, t.cols = numel() - k;
    return t;
  }
  /* The first r x c elements as an r x c matrix. */
  Tensor shaped(int64_t r, int64_t c) const {
    if (r * c > numel()) throw std::out_of_range("tensor view of " + std::to_string(r) + "x" + std::to_string(c) + " exceeds " + std::to_string(numel()) + " elements");
    Tensor t = *this;
    t.rows = r, t.cols = c;
    return t;
  }
  /* The memory as T; throws when T is not this view's element type (a storage mix-up, never reinterpreted). */
  template <typename T>
  T* as() const {
    if (data && dtype_of<T>::value != dtype)
      throw std::logic_error(std::string("a ") + dtype_name(dtype) + " tensor used as " + dtype_name(dtype_of<T>::value));
    return static_cast<T*>(data);
  }
  float* f32() const { return as<float>(); }
  int32_t* i32() const { return as<int32_t>(); }
  double* f64() const { return as<double>(); }
};

/* Host arrays as views (tests, the CPU backend's scratch). */
inline Tensor host_tensor(float* p, int64_t n) { return Tensor(p, DType::F32, n, kHost); }
inline Tensor host_tensor(int32_t* p, int64_t n) { return Tensor(p, DType::I32, n, kHost); }
inline Tensor host_tensor(double* p, int64_t n) { return Tensor(p, DType::F64, n, kHost); }

}  // namespace cx
