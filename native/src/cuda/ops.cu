/* CUDA backend: every op of the CPU backend, under the same names, with the same rounding points.
 *   "cuda": bf16 runs store activations and the compute copy of the weights as packed bf16 (activation_dtype;
 *     each op dispatches on its operands' dtype); matmuls through cuBLASLt on bf16 tensor cores with fp32 accumulation; attention
 *     through the fused document-masked kernels. fp32 runs: cuBLASLt in fp32, reference attention.
 *   "cuda-reference": fp32 storage (bf16 values rounded in place) and the simple kernels of reference.cu only:
 *     the yardstick the fast path is checked against on the GPU (native/test/gpu-check.sh).
 * Weight gradients, master weights, AdamW moments and statistics are fp32 in every mode.
 * CHUXIN_CUDA_GEMM=reference makes the fast backend use the reference GEMM instead of cuBLASLt (to tell a
 * cuBLASLt problem from a kernel problem).
 * Status: checked on an H200 (native/test/gpu-check.sh, 2026-11-26: 104 of 104 against the CPU backend;
 * bench/gpu-notes.md has the throughput) and an H100 (2026-11-27). Since the move to typed tensor views
 * (2026-11-27, later) it has been compiled with nvcc (sm_80, sm_90a) and checked under the CPU emulation of CUDA
 * (native/test/emu; 112 of 112), not yet on a GPU. The sm_80 build is compiled but has not run on an A100. */
#include <cuda_runtime.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../model/backend.h"
#include "common.cuh"
#include "flash_attention.h"
#include "gemm_lt.h"
#include "kernels.h"

namespace cx {
namespace {

using cuda::bf16_t;

/* Calls fn with a null T* for the storage of t: float (fp32 runs, the reference backend) or bf16_t (the fast
 * backend's bf16 runs). Operands are then taken as<T>(), which throws on a tensor stored otherwise. */
template <typename F>
void by_storage(const Tensor& t, F&& fn) {
  if (t.dtype == DType::BF16) fn(static_cast<bf16_t*>(nullptr));
  else fn(static_cast<float*>(nullptr));
}
#define CX_STORAGE_T(tag) using T = std::remove_pointer_t<decltype(tag)>

class CudaBackend final : public Backend {
 public:
  /* Throws with the reason (no cuBLASLt, no memory). */
  CudaBackend(bool reference, int device) : reference_(reference), device_(device) {
    CX_CUDA(cudaSetDevice(device_));
    CX_CUDA(cudaMalloc(&partial_, cuda::kSumBlocks * sizeof(double)));
    const char* gemm = std::getenv("CHUXIN_CUDA_GEMM");
    if (!reference_ && !(gemm && std::string(gemm) == "reference")) {
      lt_ = std::make_unique<LtGemm>();
      std::string why;
      if (!lt_->init(&why)) {
        cudaFree(partial_);
        throw std::runtime_error(why);
      }
    }
  }
  ~CudaBackend() override {
    lt_.reset();
    cudaFree(partial_);
    cudaFree(scratch_);
  }
  const char* name() const override { return reference_ ? "cuda-reference" : "cuda"; }
  int device() const override { return device_; }
  void make_current() override { CX_CUDA(cudaSetDevice(device_)); }
  // Every kernel and cuBLASLt call is queued on the device's default stream today (kernels.h).
  void* stream() const override { return nullptr; }
  Tensor alloc(size_t n, DType dtype) override {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(n, 1) * dtype_size(dtype)) != cudaSuccess) return cudaGetLastError(), Tensor();
    return Tensor(p, dtype, (int64_t)n, device_);
  }
  void release(Tensor t) override { cudaFree(t.data); }
  void upload(Tensor dst, const void* src, size_t n) override { CX_CUDA(cudaMemcpy(dst.data, src, n * dtype_size(dst.dtype), cudaMemcpyHostToDevice)); }
  void download(void* dst, Tensor src, size_t n) override { CX_CUDA(cudaMemcpy(dst, src.data, n * dtype_size(src.dtype), cudaMemcpyDeviceToHost)); }
  void upload_values(Tensor dst, const float* src, size_t n) override {
    if (dst.dtype != DType::BF16) return upload(dst, src, n);
    Tensor staged = scratch(n);
    upload(staged, src, n);
    cuda::copy_round(dst.as<bf16_t>(), staged.f32(), (int64_t)n, true);
  }
  void download_values(float* dst, Tensor src, size_t n) override {
    if (src.dtype != DType::BF16) return download(dst, src, n);
    Tensor staged = scratch(n);
    cuda::widen(staged.f32(), src.as<bf16_t>(), (int64_t)n);
    download(dst, staged, n);
  }
  DType activation_dtype(bool bf16) const override { return bf16 && !reference_ ? DType::BF16 : DType::F32; }

  CX_BACKEND_OPS(CX_OVERRIDE_OP)

  std::string memory_info() override {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return "";
    return std::to_string(free_b >> 20) + " MB free of " + std::to_string(total_b >> 20) + " MB";
  }
  bool memory_available(size_t* free_bytes, size_t* total_bytes) override {
    return cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess;
  }
  /* The scratch buffer's users that grow with the batch: attention's backward row sums (one fp32 per token and
   * head) and the norm's partial weight gradients; it holds the larger. */
  size_t workspace_bytes(int64_t N, int64_t hidden, int64_t heads) const override {
    return 4 * (size_t)std::max(N * heads, cuda::rmsnorm_backward_workspace(N, hidden));
  }

 private:
  static void check_reference_head(int64_t D) {
    if (D > cuda::kReferenceMaxHead)
      throw std::runtime_error("head size " + std::to_string(D) + " exceeds the CUDA reference kernels' limit of " +
                               std::to_string(cuda::kReferenceMaxHead));
  }
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const Tensor& A, int64_t lda, const Tensor& B, int64_t ldb, const Tensor& C,
            int64_t ldc, bool acc, bool round_output);
  void rope(Tensor x, Tensor pos, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, float sign, bool bf16) {
    by_storage(x, [&](auto tag) {
      CX_STORAGE_T(tag);
      cuda::rope(x.as<T>(), pos.i32(), N, H, D, inv_freq.f64(), scale, sign, bf16);
    });
  }
  /* n fp32 of scratch memory: grows once to the largest size asked for (the first step), then is reused, so
   * later steps allocate nothing. */
  Tensor scratch(size_t n) {
    if (n > scratch_n_) {
      cudaFree(scratch_);
      scratch_ = nullptr;
      if (cudaMalloc(&scratch_, n * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        scratch_n_ = 0;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw std::runtime_error("out of GPU memory: a scratch buffer needs " + std::to_string(n * 4 >> 20) + " MB, " +
                                 std::to_string(free_b >> 20) + " MB free; lower --micro-batch or --context");
      }
      scratch_n_ = n;
    }
    return Tensor(scratch_, DType::F32, (int64_t)n, device_);
  }
  bool reference_;
  int device_;
  std::unique_ptr<LtGemm> lt_;
  double* partial_ = nullptr;
  float* scratch_ = nullptr;
  size_t scratch_n_ = 0;
};

void CudaBackend::fill(Tensor dst, float value, size_t n) {
  by_storage(dst, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::fill(dst.as<T>(), value, (int64_t)n);
  });
}
void CudaBackend::copy_round(Tensor dst, Tensor src, size_t n, bool bf16) {
  by_storage(dst, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::copy_round(dst.as<T>(), src.f32(), (int64_t)n, bf16);
  });
}

void CudaBackend::embedding_forward(Tensor out, Tensor tokens, Tensor wte, int64_t N, int64_t C, bool bf16) {
  by_storage(out, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::embedding_forward(out.as<T>(), tokens.i32(), wte.as<T>(), N, C, bf16);
  });
}
void CudaBackend::embedding_backward(Tensor dwte, Tensor dout, Tensor tokens, int64_t N, int64_t C, bool) {
  by_storage(dout, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::embedding_backward(dwte.f32(), dout.as<T>(), tokens.i32(), N, C);
  });
}

void CudaBackend::matmul_forward(Tensor out, Tensor inp, Tensor weight, int64_t N, int64_t Cin, int64_t Cout, bool bf16) {
  gemm(false, true, N, Cout, Cin, inp, Cin, weight, Cin, out, Cout, false, bf16);
}
void CudaBackend::matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, int64_t N, int64_t Cin, int64_t Cout,
                                  bool accumulate_dinp, bool bf16) {
  // Accumulating, the GEMM adds the product to dinp (beta = 1) in fp32 and rounds the sum once: no separate pass.
  if (dinp) gemm(false, false, N, Cin, Cout, dout, Cout, weight, Cin, dinp, Cin, accumulate_dinp, bf16);
  if (dweight) gemm(true, false, Cout, Cin, N, dout, Cout, inp, Cin, dweight, Cin, true, false);
}

void CudaBackend::rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor weight, int64_t N, int64_t C, float eps, bool bf16) {
  by_storage(out, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::rmsnorm_forward(out.as<T>(), rstd.f32(), inp.as<T>(), weight.as<T>(), N, C, eps, bf16);
  });
}
void CudaBackend::rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd, int64_t N, int64_t C,
                                   bool bf16) {
  float* workspace = scratch((size_t)cuda::rmsnorm_backward_workspace(N, C)).f32();
  by_storage(dinp, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::rmsnorm_backward(dinp.as<T>(), dweight.f32(), dout.as<T>(), inp.as<T>(), weight.as<T>(), rstd.f32(), N, C, bf16, workspace);
  });
}
void CudaBackend::residual_forward(Tensor out, Tensor a, Tensor b, int64_t n, bool bf16) {
  by_storage(out, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::residual_forward(out.as<T>(), a.as<T>(), b.as<T>(), n, bf16);
  });
}
void CudaBackend::residual_rmsnorm_forward(Tensor sum, Tensor norm, Tensor rstd, Tensor a, Tensor b, Tensor weight, int64_t N, int64_t C,
                                           float eps, bool bf16) {
  by_storage(sum, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::residual_rmsnorm_forward(sum.as<T>(), norm.as<T>(), rstd.f32(), a.as<T>(), b.as<T>(), weight.as<T>(), N, C, eps, bf16);
  });
}

void CudaBackend::rope_forward(Tensor x, Tensor pos, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, bool bf16) {
  rope(x, pos, N, H, D, inv_freq, scale, 1.f, bf16);
}
void CudaBackend::rope_backward(Tensor dx, Tensor pos, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, bool bf16) {
  rope(dx, pos, N, H, D, inv_freq, scale, -1.f, bf16);
}

void CudaBackend::attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor doc_start, int64_t B, int64_t T_, int64_t H,
                                    int64_t D, bool bf16) {
  by_storage(out, [&](auto tag) {
    CX_STORAGE_T(tag);
    if (std::is_same_v<T, bf16_t> && flash_attention_supports(D))
      return flash_attention_forward(out.as<bf16_t>(), lse.f32(), q.as<bf16_t>(), k.as<bf16_t>(), v.as<bf16_t>(), doc_start.i32(), B, T_, H, D,
                                     true);
    check_reference_head(D);
    cuda::reference_attention_forward(out.as<T>(), lse.f32(), q.as<T>(), k.as<T>(), v.as<T>(), doc_start.i32(), B, T_, H, D, bf16);
  });
}
void CudaBackend::attention_cached(Tensor out, Tensor kcache, Tensor vcache, Tensor q, Tensor k, Tensor v, int64_t Tq, int64_t past, int64_t H, int64_t D,
                                   bool bf16) {
  by_storage(out, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::attention_cached(out.as<T>(), kcache.as<T>(), vcache.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), Tq, past, H, D, bf16);
  });
}
void CudaBackend::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v,
                                     Tensor doc_start, int64_t B, int64_t T_, int64_t H, int64_t D, bool bf16) {
  float* delta = scratch((size_t)(B * H * T_)).f32();
  by_storage(dq, [&](auto tag) {
    CX_STORAGE_T(tag);
    const bool fused = std::is_same_v<T, bf16_t> && flash_attention_supports(D);
    if (!fused) check_reference_head(D);
    cuda::attention_delta(delta, dout.as<T>(), out.as<T>(), B, T_, H, D);
    if (fused)
      return flash_attention_backward(dq.as<bf16_t>(), dk.as<bf16_t>(), dv.as<bf16_t>(), dout.as<bf16_t>(), lse.f32(), delta, q.as<bf16_t>(),
                                      k.as<bf16_t>(), v.as<bf16_t>(), doc_start.i32(), B, T_, H, D, true);
    cuda::reference_attention_backward(dq.as<T>(), dk.as<T>(), dv.as<T>(), dout.as<T>(), lse.f32(), delta, q.as<T>(), k.as<T>(), v.as<T>(),
                                       doc_start.i32(), B, T_, H, D, bf16);
  });
}

void CudaBackend::attention_block_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor q_start, int64_t q_offset, int64_t k_offset,
                                          int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  by_storage(q, [&](auto tag) {
    CX_STORAGE_T(tag);
    // Packed bf16 runs on the fused tensor-core kernels, as whole rows do; fp32 on the reference kernels.
    if (std::is_same_v<T, bf16_t> && flash_attention_supports(D))
      return flash_attention_block_forward(out.f32(), lse.f32(), q.as<bf16_t>(), k.as<bf16_t>(), v.as<bf16_t>(), q_start.i32(), q_offset, k_offset,
                                           Tq, Tk, H, D);
    check_reference_head(D);
    cuda::attention_block_forward(out.f32(), lse.f32(), q.as<T>(), k.as<T>(), v.as<T>(), q_start.i32(), q_offset, k_offset, Tq, Tk, H, D);
  });
}
void CudaBackend::attention_block_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v,
                                           Tensor q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  float* delta = scratch((size_t)(H * Tq)).f32();
  by_storage(q, [&](auto tag) {
    CX_STORAGE_T(tag);
    const bool fused = std::is_same_v<T, bf16_t> && flash_attention_supports(D);
    if (!fused) check_reference_head(D);
    cuda::attention_delta(delta, dout.as<T>(), out.as<T>(), 1, Tq, H, D);
    if (fused)
      return flash_attention_block_backward(dq.f32(), dk.f32(), dv.f32(), dout.as<bf16_t>(), lse.f32(), delta, q.as<bf16_t>(), k.as<bf16_t>(),
                                            v.as<bf16_t>(), q_start.i32(), q_offset, k_offset, Tq, Tk, H, D);
    cuda::attention_block_backward(dq.f32(), dk.f32(), dv.f32(), dout.as<T>(), lse.f32(), delta, q.as<T>(), k.as<T>(), v.as<T>(), q_start.i32(),
                                   q_offset, k_offset, Tq, Tk, H, D);
  });
}
void CudaBackend::attention_combine(Tensor acc_out, Tensor acc_lse, Tensor out, Tensor lse, int64_t Tq, int64_t H, int64_t D) {
  cuda::attention_combine(acc_out.f32(), acc_lse.f32(), out.f32(), lse.f32(), Tq, H, D);
}

void CudaBackend::swiglu_forward(Tensor out, Tensor gate, Tensor up, int64_t n, bool bf16) {
  by_storage(out, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::swiglu_forward(out.as<T>(), gate.as<T>(), up.as<T>(), n, bf16);
  });
}
void CudaBackend::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up, int64_t n, bool bf16) {
  by_storage(dgate, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::swiglu_backward(dgate.as<T>(), dup.as<T>(), dout.as<T>(), gate.as<T>(), up.as<T>(), n, bf16);
  });
}

void CudaBackend::lm_head_cross_entropy(Tensor losses, Tensor dhidden, Tensor dweight, Tensor hidden, Tensor weight, Tensor targets, int64_t N,
                                        int64_t C, int64_t V, float scale, bool bf16) {
  // Chunks of up to 2^28 fp32 logits (1 GiB; 2,621 rows at ChuXin's vocabulary): every chunk reads the head's
  // weight twice and reads and writes its fp32 gradient once (840 MB at ChuXin), so few large chunks keep
  // the head compute-bound. CHUXIN_LM_HEAD_CHUNK (logits per chunk) exists for the checks, to force many.
  const char* chunk = std::getenv("CHUXIN_LM_HEAD_CHUNK");
  const int64_t budget = chunk && std::atoll(chunk) > 0 ? std::atoll(chunk) : (int64_t)1 << 28;
  const int64_t rows = std::max<int64_t>(16, std::min<int64_t>(N, budget / V));
  // fp32 logits for a chunk of rows, then (packed storage) their gradient in bf16 for the two GEMMs after it;
  // fp32 storage computes the gradient in place of the logits.
  const bool packed = hidden.dtype == DType::BF16;
  Tensor area = scratch((size_t)(rows * V + (packed ? (rows * V + 1) / 2 : 0)));
  Tensor logits = area.shaped(1, rows * V);
  Tensor dlogits = packed ? Tensor(area.f32() + rows * V, DType::BF16, rows * V, device_) : logits;
  by_storage(hidden, [&](auto tag) {
    CX_STORAGE_T(tag);
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t R = std::min(rows, N - r0);
      const Tensor h = hidden + r0 * C;
      gemm(false, true, R, V, C, h, C, weight, C, logits, V, false, false);
      cuda::cross_entropy_rows(logits.f32(), dhidden ? dlogits.as<T>() : nullptr, losses.f32() + r0, targets.i32() + r0, R, V, scale,
                               (bool)dhidden, bf16);
      if (dhidden) {
        gemm(false, false, R, C, V, dlogits, V, weight, C, dhidden + r0 * C, C, false, bf16);
        gemm(true, false, V, C, R, dlogits, V, h, C, dweight, C, true, false);
      }
    }
  });
}
void CudaBackend::lm_head_logits(Tensor out, Tensor hidden, Tensor weight, Tensor rows, int64_t R, int64_t C, int64_t V, bool bf16) {
  Tensor h = scratch((size_t)(R * C));
  by_storage(hidden, [&](auto tag) {
    CX_STORAGE_T(tag);
    if (std::is_same_v<T, bf16_t>) h = Tensor(h.data, DType::BF16, R * C, device_);
    cuda::gather_rows(h.as<T>(), hidden.as<T>(), rows.i32(), R, C);
  });
  gemm(false, true, R, V, C, h, C, weight, C, out, V, false, bf16);
}

double CudaBackend::sum_squares(Tensor x, size_t n) {
  cuda::sum_squares_partial(partial_, x.f32(), (int64_t)n);
  std::vector<double> host(cuda::kSumBlocks);
  CX_CUDA(cudaMemcpy(host.data(), partial_, host.size() * sizeof(double), cudaMemcpyDeviceToHost));
  double total = 0;
  for (double s : host) total += s;
  return total;
}
void CudaBackend::clip_factor(Tensor clip, Tensor grad, size_t n, float max_norm) {
  cuda::clip_factor(clip.f64(), partial_, grad.f32(), (int64_t)n, max_norm);
}
void CudaBackend::adamw(Tensor param, Tensor compute_copy, Tensor grad, Tensor m, Tensor v, size_t n, const AdamWParams& hp, bool bf16) {
  const bool separate = !compute_copy.same_memory(param);
  by_storage(compute_copy, [&](auto tag) {
    CX_STORAGE_T(tag);
    cuda::adamw(param.f32(), separate ? compute_copy.as<T>() : nullptr, grad.f32(), m.f32(), v.f32(), (int64_t)n, hp, bf16);
  });
}

/* Row-major C[M][N] (= or +=) op(A)·op(B). A and B share a storage (fp32 or packed bf16); C is fp32 or packed
 * bf16 as its view says. round_output: an fp32 C of a bf16 run gets bf16 values (the rounding point of an
 * activation kept in fp32). cuBLASLt, or the reference kernel in the reference backend (and with
 * CHUXIN_CUDA_GEMM=reference). */
void CudaBackend::gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const Tensor& A, int64_t lda, const Tensor& B, int64_t ldb,
                       const Tensor& C, int64_t ldc, bool acc, bool round_output) {
  if (M <= 0 || N <= 0) return;
  if (A.dtype != B.dtype) throw std::logic_error(std::string("GEMM operands stored as ") + dtype_name(A.dtype) + " and " + dtype_name(B.dtype));
  const bool in_bf16 = A.dtype == DType::BF16, out_bf16 = C.dtype == DType::BF16;
  if (lt_) {
    lt_->run(ta, tb, M, N, K, A.data, lda, B.data, ldb, C.data, ldc, acc, in_bf16 ? lt::kR16BF : lt::kR32F, out_bf16 ? lt::kR16BF : lt::kR32F);
    if (round_output && !out_bf16) {
      if (ldc != N) throw std::runtime_error("internal: bf16 rounding of a strided GEMM output");
      cuda::copy_round(C.f32(), C.f32(), M * N, true);
    }
    return;
  }
  if (out_bf16) cuda::reference_gemm(ta, tb, M, N, K, A.as<bf16_t>(), lda, B.as<bf16_t>(), ldb, C.as<bf16_t>(), ldc, acc, true);
  else if (in_bf16) cuda::reference_gemm(ta, tb, M, N, K, A.as<bf16_t>(), lda, B.as<bf16_t>(), ldb, C.f32(), ldc, acc, round_output);
  else cuda::reference_gemm(ta, tb, M, N, K, A.f32(), lda, B.f32(), ldb, C.f32(), ldc, acc, round_output);
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

Backend* create_cuda_backend(std::string* why, bool reference_kernels, int device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = std::string("no usable CUDA driver or device (") + cudaGetErrorString(err) + ")";
    cudaGetLastError();
    return nullptr;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device is visible";
    return nullptr;
  }
  try {
    if (device < 0 || device >= count) {
      if (why) *why = "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " visible)";
      return nullptr;
    }
    return new CudaBackend(reference_kernels, device);
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return nullptr;
  }
}

}  // namespace cx
