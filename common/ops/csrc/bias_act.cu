// bias_act kernel: bias, activation, gain and clamp in one pass, plus its first and second derivatives.
#include "bias_act.h"

namespace genforce_ops {

// SELU constants (Klambauer et al. 2017), the values torch.nn.functional.selu uses.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

template <typename A>
GENFORCE_HD A sigmoid(A u) { return A(1) / (A(1) + exp(-u)); }

template <typename A>
GENFORCE_HD A activate(int act, A u, A alpha) {
  switch (act) {
    case kRelu: return u > A(0) ? u : A(0);
    case kLrelu: return u > A(0) ? u : u * alpha;
    case kTanh: return tanh(u);
    case kSigmoid: return sigmoid(u);
    case kElu: return u > A(0) ? u : expm1(u);
    case kSelu: return u > A(0) ? A(kSeluScale) * u : A(kSeluScale * kSeluAlpha) * expm1(u);
    case kSoftplus: return u > A(20) ? u : log1p(exp(u));  // torch's threshold 20
    case kSwish: return u * sigmoid(u);
    default: return u;
  }
}

// First derivative from the pre-activation u (swish) or the un-scaled output y0 (all others).
template <typename A>
GENFORCE_HD A derivative(int act, A u, A y0, A alpha) {
  switch (act) {
    case kRelu: return y0 > A(0) ? A(1) : A(0);
    case kLrelu: return y0 > A(0) ? A(1) : alpha;
    case kTanh: return A(1) - y0 * y0;
    case kSigmoid: return y0 * (A(1) - y0);
    case kElu: return y0 > A(0) ? A(1) : y0 + A(1);
    case kSelu: return y0 > A(0) ? A(kSeluScale) : y0 + A(kSeluScale * kSeluAlpha);
    case kSoftplus: return -expm1(-y0);
    case kSwish: { A s = sigmoid(u); return s + u * s * (A(1) - s); }
    default: return A(1);
  }
}

template <typename A>
GENFORCE_HD A second_derivative(int act, A u, A y0) {
  switch (act) {
    case kTanh: return A(-2) * y0 * (A(1) - y0 * y0);
    case kSigmoid: return y0 * (A(1) - y0) * (A(1) - A(2) * y0);
    case kElu: return y0 > A(0) ? A(0) : y0 + A(1);
    case kSelu: return y0 > A(0) ? A(0) : y0 + A(kSeluScale * kSeluAlpha);
    case kSoftplus: { A s = -expm1(-y0); return s * (A(1) - s); }
    case kSwish: { A s = sigmoid(u); return s * (A(1) - s) * (A(2) + u * (A(1) - A(2) * s)); }
    default: return A(0);  // linear, relu, lrelu: zero almost everywhere
  }
}

// Element i of the output (see BiasActParams for the three modes).
template <typename T, typename I>
GENFORCE_HD void bias_act_element(const BiasActParams& p, I i) {
  using A = typename AccType<T>::type;
  const T* b = static_cast<const T*>(p.b);
  const T* xref = static_cast<const T*>(p.xref);
  const T* yref = static_cast<const T*>(p.yref);
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  const A bias = b ? A(load(b + (i / I(p.b_stride)) % I(p.b_size))) : A(0);
  const A v = A(load(static_cast<const T*>(p.x) + i));
  A result;
  if (p.mode == 0) {
    result = activate(p.act, v + bias, alpha) * gain;
    if (p.clamp >= 0) result = result > clamp ? clamp : (result < -clamp ? -clamp : result);
  } else {
    const A u = xref ? A(load(xref + i)) + bias : A(0);
    const A y = yref ? A(load(yref + i)) : A(0);
    const A y0 = gain != A(0) ? y / gain : A(0);
    if (p.mode == 1) {
      result = v * gain * derivative(p.act, u, y0, alpha);
    } else {
      result = v * A(load(static_cast<const T*>(p.dy) + i)) * gain * second_derivative(p.act, u, y0);
    }
    if (p.clamp >= 0 && !(y > -clamp && y < clamp)) result = A(0);
  }
  store(static_cast<T*>(p.out) + i, result);
}

namespace {

template <typename T, typename I>
__global__ void bias_act_kernel(const BiasActParams p) {
  const I size = p.size;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < size; i += I(blockDim.x) * gridDim.x) {
    bias_act_element<T, I>(p, i);
  }
}

template <typename T>
void launch_typed(const BiasActParams& p, bool index64, cudaStream_t stream) {
  const int threads = 256;
  const unsigned int blocks = grid_size(p.size, threads);
  if (index64) {
    bias_act_kernel<T, int64_t><<<blocks, threads, 0, stream>>>(p);
  } else {
    bias_act_kernel<T, int32_t><<<blocks, threads, 0, stream>>>(p);
  }
}

}  // namespace

void bias_act_launch(const BiasActParams& p, DType dtype, bool index64, cudaStream_t stream) {
  switch (dtype) {
    case kFloat: launch_typed<float>(p, index64, stream); break;
    case kDouble: launch_typed<double>(p, index64, stream); break;
    case kHalf: launch_typed<__half>(p, index64, stream); break;
    case kBFloat16: launch_typed<__nv_bfloat16>(p, index64, stream); break;
  }
}

}  // namespace genforce_ops
