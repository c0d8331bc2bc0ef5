// bias_act kernel interface; the math is documented in common/ops/activation.py.
#pragma once

#include "common.h"

namespace genforce_ops {

// Activation codes, in the order of common.ops.activation.ACTIVATIONS.
enum Act : int { kLinear = 0, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

// mode 0: out = clamp(gain * act(x + b))                                  (x = input)
// mode 1: out = x * gain * act'(xref + b) * [|yref| < clamp]              (x = dy, the incoming gradient)
// mode 2: out = x * dy * gain * act''(xref + b) * [|yref| < clamp]        (x = d(dx), second order)
// act' and act'' are evaluated from yref / gain for the activations that are invertible on their output
// (relu, lrelu, tanh, sigmoid, elu, selu, softplus) and from xref + b for swish.
struct BiasActParams {
  const void* x;
  const void* b;     // [b_size] or nullptr
  const void* xref;  // like x, or nullptr
  const void* yref;  // like x, or nullptr
  const void* dy;    // like x, or nullptr (mode 2 only)
  void* out;         // like x
  int64_t size;      // number of elements; all tensors share one dense memory layout
  int64_t b_size, b_stride;  // bias index of element i: (i / b_stride) % b_size
  int mode, act;
  double alpha, gain, clamp;  // clamp < 0: no clamping
};

void bias_act_launch(const BiasActParams& p, DType dtype, bool index64, cudaStream_t stream);

}  // namespace genforce_ops
