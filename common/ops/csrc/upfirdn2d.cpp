// Operator genforce_ops_upfirdn2d::upfirdn2d (CUDA): binds common/ops/csrc/upfirdn2d.cu for torch.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "binding.h"
#include "upfirdn2d.h"

namespace {

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip_filter,
                     double gain) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d: x must be a 4-D CUDA tensor");
  TORCH_CHECK(f.device() == x.device() && f.dim() == 2 && f.is_contiguous(),
              "upfirdn2d: f must be a contiguous 2-D tensor on the device of x");
  const at::ScalarType f_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(f.scalar_type() == f_type, "upfirdn2d: f must be ", f_type, " for ", x.scalar_type(), " inputs");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
  const int64_t f_h = f.size(0), f_w = f.size(1);
  TORCH_CHECK(f_h >= 1 && f_w >= 1, "upfirdn2d: empty filter");
  const int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - f_h) / down_y + 1;
  const int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - f_w) / down_x + 1;
  TORCH_CHECK(x.size(2) * up_y + pad_y0 + pad_y1 >= f_h && x.size(3) * up_x + pad_x0 + pad_x1 >= f_w,
              "upfirdn2d: padded image is smaller than the filter");
  const c10::cuda::CUDAGuard guard(x.device());

  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(x.suggest_memory_format()));
  genforce_ops::Upfirdn2dParams p{};
  p.x = x.data_ptr();
  p.f = f.data_ptr();
  p.y = y.data_ptr();
  p.n = x.size(0);
  p.c = x.size(1);
  p.in_h = x.size(2);
  p.in_w = x.size(3);
  p.out_h = out_h;
  p.out_w = out_w;
  for (int d = 0; d < 4; ++d) {
    p.x_stride[d] = x.stride(d);
    p.y_stride[d] = y.stride(d);
  }
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.f_h = static_cast<int>(f_h);
  p.f_w = static_cast<int>(f_w);
  p.flip_filter = flip_filter;
  p.channels_last = y.dim() == 4 && !y.is_contiguous() && y.is_contiguous(at::MemoryFormat::ChannelsLast);
  p.gain = gain;
  if (y.numel() == 0) return y;
  const int64_t largest = std::max({genforce_ops::storage_span(x), genforce_ops::storage_span(y), y.numel(),
                                    x.size(2) * up_y + std::abs(pad_y0) + f_h,
                                    x.size(3) * up_x + std::abs(pad_x0) + f_w});
  genforce_ops::upfirdn2d_launch(p, genforce_ops::dtype_code(x, "upfirdn2d"), genforce_ops::needs_index64(largest),
                                 c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

}  // namespace

TORCH_LIBRARY(genforce_ops_upfirdn2d, m) {
  m.def(
      "upfirdn2d(Tensor x, Tensor f, int up_x, int up_y, int down_x, int down_y, int pad_x0, int pad_x1, "
      "int pad_y0, int pad_y1, bool flip_filter, float gain) -> Tensor");
}

TORCH_LIBRARY_IMPL(genforce_ops_upfirdn2d, CUDA, m) { m.impl("upfirdn2d", &upfirdn2d); }
