// upfirdn2d kernel interface: y = downsample(FIR(pad(upsample(x)))) per channel; see common/ops/resample.py.
#pragma once

#include "common.h"

namespace genforce_ops {

struct Upfirdn2dParams {
  const void* x;       // input  [N, C, in_h, in_w], any strides
  const void* f;       // filter [f_h, f_w], contiguous; float32 (double for double tensors)
  void* y;             // output [N, C, out_h, out_w], strides below
  int64_t n, c, in_h, in_w, out_h, out_w;
  int64_t x_stride[4];  // element strides of x along N, C, H, W
  int64_t y_stride[4];  // element strides of y along N, C, H, W
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;  // leading padding of the upsampled image (negative = crop)
  int f_h, f_w;
  bool flip_filter;    // true: correlate with f; false: convolve (f flipped)
  bool channels_last;  // enumerate outputs in NHWC memory order (coalesced writes for channels_last y)
  double gain;
};

void upfirdn2d_launch(const Upfirdn2dParams& p, DType dtype, bool index64, cudaStream_t stream);

}  // namespace genforce_ops
