// Shared helpers for the genforce fused-op kernels: element loads/stores in the accumulation type.
// Kernels compute in float for float/half/bfloat16 tensors and in double for double tensors.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace genforce_ops {

// Element type codes shared by the host bindings (.cpp) and the kernels (.cu).
enum DType : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };

template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

#ifdef __CUDACC__
// __host__ too, so that the per-element math can be exercised on a machine without a GPU.
#define GENFORCE_HD __host__ __device__ __forceinline__

GENFORCE_HD float load(const float* p) { return *p; }
GENFORCE_HD double load(const double* p) { return *p; }
GENFORCE_HD float load(const __half* p) { return __half2float(*p); }
GENFORCE_HD float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

GENFORCE_HD void store(float* p, float v) { *p = v; }
GENFORCE_HD void store(double* p, double v) { *p = v; }
GENFORCE_HD void store(__half* p, float v) { *p = __float2half_rn(v); }
GENFORCE_HD void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
#endif

// Blocks for a grid-stride loop over `total` elements, capped far below the hardware limit.
inline unsigned int grid_size(int64_t total, int threads) {
  const int64_t cap = int64_t(1) << 20;
  int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace genforce_ops
