// Host-side helpers shared by the operator bindings.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdlib>

#include "common.h"

namespace genforce_ops {

inline DType dtype_code(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat: return kFloat;
    case at::kDouble: return kDouble;
    case at::kHalf: return kHalf;
    case at::kBFloat16: return kBFloat16;
    default: TORCH_CHECK(false, op, ": unsupported dtype ", t.scalar_type());
  }
}

// Largest element offset reachable in t, plus one (0 for empty tensors).
inline int64_t storage_span(const at::Tensor& t) {
  int64_t span = 1;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 0) return 0;
    span += (t.size(d) - 1) * std::abs(t.stride(d));
  }
  return span;
}

// Kernels use 32-bit indices unless an offset (or the grid-stride step on top of it) could overflow them.
inline bool needs_index64(int64_t largest) { return largest > (int64_t(1) << 30); }

}  // namespace genforce_ops
