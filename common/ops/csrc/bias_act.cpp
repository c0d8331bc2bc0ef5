// Operator genforce_ops_bias_act::bias_act (CUDA): binds common/ops/csrc/bias_act.cu for torch.
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "bias_act.h"
#include "binding.h"

namespace {

using genforce_ops::BiasActParams;

// Same element order in memory: equal sizes, and equal strides wherever the size is not 1.
bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

const void* optional_ptr(const std::optional<at::Tensor>& t, const at::Tensor& like, const char* name) {
  if (!t.has_value() || !t->defined() || t->numel() == 0) return nullptr;
  TORCH_CHECK(same_layout(*t, like), "bias_act: ", name, " must have the shape and memory layout of x");
  TORCH_CHECK(t->scalar_type() == like.scalar_type() && t->device() == like.device(),
              "bias_act: ", name, " must have the dtype and device of x");
  return t->data_ptr();
}

at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& xref,
                    const std::optional<at::Tensor>& yref, const std::optional<at::Tensor>& dy, int64_t mode,
                    int64_t dim, int64_t act, double alpha, double gain, double clamp) {
  TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some memory format)");
  TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: mode must be 0, 1 or 2");
  TORCH_CHECK(act >= genforce_ops::kLinear && act <= genforce_ops::kSwish, "bias_act: unknown activation code ", act);
  const c10::cuda::CUDAGuard guard(x.device());

  BiasActParams p{};
  p.x = x.data_ptr();
  p.xref = optional_ptr(xref, x, "xref");
  p.yref = optional_ptr(yref, x, "yref");
  p.dy = optional_ptr(dy, x, "dy");
  TORCH_CHECK(mode != 2 || p.dy != nullptr, "bias_act: mode 2 needs dy");
  p.b = nullptr;
  p.b_size = 1;
  p.b_stride = 1;
  if (b.has_value() && b->defined() && b->numel() > 0) {
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range");
    TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(dim) && b->is_contiguous(),
                "bias_act: b must be a contiguous vector of length x.shape[dim]");
    TORCH_CHECK(b->scalar_type() == x.scalar_type() && b->device() == x.device(),
                "bias_act: b must have the dtype and device of x");
    p.b = b->data_ptr();
    p.b_size = x.size(dim);
    p.b_stride = p.b_size > 1 ? x.stride(dim) : 1;  // the stride of a size-1 dim is arbitrary
  }
  at::Tensor out = at::empty_like(x);
  p.out = out.data_ptr();
  p.size = x.numel();
  p.mode = static_cast<int>(mode);
  p.act = static_cast<int>(act);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  if (p.size == 0) return out;
  genforce_ops::bias_act_launch(p, genforce_ops::dtype_code(x, "bias_act"), genforce_ops::needs_index64(p.size),
                                c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY(genforce_ops_bias_act, m) {
  m.def(
      "bias_act(Tensor x, Tensor? b, Tensor? xref, Tensor? yref, Tensor? dy, int mode, int dim, int act, "
      "float alpha, float gain, float clamp) -> Tensor");
}

TORCH_LIBRARY_IMPL(genforce_ops_bias_act, CUDA, m) { m.impl("bias_act", &bias_act); }
