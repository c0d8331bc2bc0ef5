// upfirdn2d forward kernel (the backward is the same op with up/down swapped and the filter flipped).
//
// For output pixel (oy, ox) of one channel, with the upsampled image u (U-1 zeros after every sample),
// its padding p0 and the correlation kernel g (g = f flipped unless flip_filter):
//   y[oy, ox] = gain * sum_{ky, kx} g[ky, kx] * u[oy * D_y - p0_y + ky, ox * D_x - p0_x + kx].
// Only taps with (oy * D_y - p0_y + ky) % U_y == 0 hit a real sample, so the loops start at the first such
// tap and step by U: no multiplications with inserted zeros and no padded copy of the input.
#include "upfirdn2d.h"

namespace genforce_ops {

template <typename I>
GENFORCE_HD I floor_mod(I a, I m) {
  I r = a % m;
  return r < 0 ? r + m : r;
}

// One output value (before the gain) of channel (n, c).
template <typename T, typename I>
GENFORCE_HD typename AccType<T>::type upfirdn2d_pixel(const Upfirdn2dParams& p, I n, I c, I oy, I ox) {
  using A = typename AccType<T>::type;
  const T* xc = static_cast<const T*>(p.x) + n * I(p.x_stride[0]) + c * I(p.x_stride[1]);
  const A* f = static_cast<const A*>(p.f);
  const I up_x = p.up_x, up_y = p.up_y, in_h = p.in_h, in_w = p.in_w;
  const I ty = oy * p.down_y - p.pad_y0;  // index in u of tap ky = 0
  const I tx = ox * p.down_x - p.pad_x0;
  A acc = 0;
  for (I ky = floor_mod(-ty, up_y); ky < p.f_h; ky += up_y) {
    const I iy = (ty + ky) / up_y;  // exact: ty + ky is a multiple of up_y
    if (iy < 0 || iy >= in_h) continue;
    const A* frow = f + (p.flip_filter ? ky : p.f_h - 1 - ky) * I(p.f_w);
    const T* xrow = xc + iy * I(p.x_stride[2]);
    for (I kx = floor_mod(-tx, up_x); kx < p.f_w; kx += up_x) {
      const I ix = (tx + kx) / up_x;
      if (ix < 0 || ix >= in_w) continue;
      acc += frow[p.flip_filter ? kx : p.f_w - 1 - kx] * A(load(xrow + ix * I(p.x_stride[3])));
    }
  }
  return acc;
}

// Output element idx, enumerated in the memory order of y (NCHW or NHWC) so that writes coalesce.
template <typename T, typename I>
GENFORCE_HD void upfirdn2d_element(const Upfirdn2dParams& p, I idx) {
  using A = typename AccType<T>::type;
  const I c_count = p.c, out_h = p.out_h, out_w = p.out_w;
  I r = idx, n, c, oy, ox;
  if (p.channels_last) {
    c = r % c_count; r /= c_count;
    ox = r % out_w; r /= out_w;
    oy = r % out_h; n = r / out_h;
  } else {
    ox = r % out_w; r /= out_w;
    oy = r % out_h; r /= out_h;
    c = r % c_count; n = r / c_count;
  }
  T* y = static_cast<T*>(p.y) + n * I(p.y_stride[0]) + c * I(p.y_stride[1]) + oy * I(p.y_stride[2]) +
         ox * I(p.y_stride[3]);
  store(y, A(upfirdn2d_pixel<T, I>(p, n, c, oy, ox) * A(p.gain)));
}

namespace {

template <typename T, typename I>
__global__ void upfirdn2d_kernel(const Upfirdn2dParams p) {
  const I total = I(p.n) * I(p.c) * I(p.out_h) * I(p.out_w);
  for (I idx = I(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += I(blockDim.x) * gridDim.x) {
    upfirdn2d_element<T, I>(p, idx);
  }
}

template <typename T>
void launch_typed(const Upfirdn2dParams& p, bool index64, cudaStream_t stream) {
  const int threads = 256;
  const unsigned int blocks = grid_size(p.n * p.c * p.out_h * p.out_w, threads);
  if (index64) {
    upfirdn2d_kernel<T, int64_t><<<blocks, threads, 0, stream>>>(p);
  } else {
    upfirdn2d_kernel<T, int32_t><<<blocks, threads, 0, stream>>>(p);
  }
}

}  // namespace

void upfirdn2d_launch(const Upfirdn2dParams& p, DType dtype, bool index64, cudaStream_t stream) {
  switch (dtype) {
    case kFloat: launch_typed<float>(p, index64, stream); break;
    case kDouble: launch_typed<double>(p, index64, stream); break;
    case kHalf: launch_typed<__half>(p, index64, stream); break;
    case kBFloat16: launch_typed<__nv_bfloat16>(p, index64, stream); break;
  }
}

}  // namespace genforce_ops
