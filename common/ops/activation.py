"""Fused bias + activation + gain + clamp (StyleGAN2-ADA ``torch_utils/ops/bias_act.py`` semantics).

``bias_act(x, b)`` = clamp(gain * act(x + b), -clamp, +clamp), with ``b`` broadcast along ``dim``. Defaults follow
the official activation table: gain sqrt(2) for relu, lrelu and swish and 1 otherwise; alpha 0.2 for lrelu (alpha
is only used by lrelu). The official table's ``elu`` and ``selu`` are torch's (alpha 1; SELU constants of
Klambauer et al. 2017) and ``softplus`` switches to the identity above 20 like ``torch.nn.functional.softplus``.

Both backends run through the same pair of autograd functions, as in the official CUDA path:
``y = F(x, b)``; ``dx = G(dy, x, b, y) = dy * gain * act'(x + b) * [|y| < clamp]``, ``db = sum of dx over all dims
but dim``; the gradient of ``G`` is ``G`` itself for ``dy`` plus ``dy * d(dx) * gain * act''(x + b) * [|y| < clamp]``
for ``x`` and ``b``, so second-order gradients (R1, path length) work. ``act'`` is read from the output ``y`` where
the activation can be inverted on it (everything but swish), so only ``y`` is kept for relu/lrelu. The reference
"kernel" is a handful of in-place torch ops on fresh tensors (one pass for bias and gain of the positively
homogeneous activations), the CUDA kernel lives in ``csrc/bias_act.cu``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.ops import extension

__all__ = ["ACTIVATIONS", "Activation", "bias_act"]

_aten = torch.ops.aten
_SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al. 2017; torch.nn.functional.selu uses the same
_SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Activation:
    """One entry of the activation table (defaults from the official ``activation_funcs``).

    code: index in ``csrc/bias_act.h``; uses_x: derivatives need the pre-activation ``x + b`` (else the output
    suffices); smooth: the second derivative is not zero almost everywhere.
    """

    code: int
    def_alpha: float
    def_gain: float
    uses_x: bool
    smooth: bool
    homogeneous: bool  # act(g * u) == g * act(u) for g > 0


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(0, 0.0, 1.0, uses_x=False, smooth=False, homogeneous=True),
    "relu": Activation(1, 0.0, math.sqrt(2), uses_x=False, smooth=False, homogeneous=True),
    "lrelu": Activation(2, 0.2, math.sqrt(2), uses_x=False, smooth=False, homogeneous=True),
    "tanh": Activation(3, 0.0, 1.0, uses_x=False, smooth=True, homogeneous=False),
    "sigmoid": Activation(4, 0.0, 1.0, uses_x=False, smooth=True, homogeneous=False),
    "elu": Activation(5, 0.0, 1.0, uses_x=False, smooth=True, homogeneous=False),
    "selu": Activation(6, 0.0, 1.0, uses_x=False, smooth=True, homogeneous=False),
    "softplus": Activation(7, 0.0, 1.0, uses_x=False, smooth=True, homogeneous=False),
    "swish": Activation(8, 0.0, math.sqrt(2), uses_x=True, smooth=True, homogeneous=False),
}


@dataclass(frozen=True)
class _Spec:
    act: str
    dim: int
    alpha: float
    gain: float
    clamp: float | None
    backend: str  # 'ref' or 'cuda'

    @property
    def info(self) -> Activation:
        return ACTIVATIONS[self.act]

    @property
    def keeps_x(self) -> bool:
        return self.info.uses_x or self.info.smooth

    @property
    def keeps_y(self) -> bool:
        return (not self.info.uses_x and self.act != "linear") or self.clamp is not None


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None,
             impl: str | None = None) -> torch.Tensor:
    """clamp(gain * act(x + b), -clamp, clamp), differentiable twice.

    x: any shape; b: ``(x.shape[dim],)`` or None (cast to ``x.dtype``); act: a key of ``ACTIVATIONS``;
    alpha/gain: None for the activation's default; clamp: None disables it; impl: None/'auto', 'ref' or 'cuda'
    (see ``common.ops.extension``). Returns a tensor of the shape, dtype and memory format of ``x``.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    info = ACTIVATIONS[act]
    alpha = float(info.def_alpha if alpha is None else alpha)
    gain = float(info.def_gain if gain is None else gain)
    if b is not None:
        if b.ndim != 1 or not 0 <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ValueError(f"b must have shape ({x.shape[dim] if 0 <= dim < x.ndim else '?'},) for x of shape "
                             f"{tuple(x.shape)} and dim={dim}; got {tuple(b.shape)}")
        b = b.to(x.dtype)
    if act == "linear" and b is None and gain == 1 and clamp is None:
        return x
    backend = extension.select_backend("bias_act", x, impl)
    spec = _Spec(act, dim, alpha, gain, None if clamp is None else float(clamp), backend)
    if backend == "cuda":
        x = x.contiguous(memory_format=extension.memory_format_of(x))
        b = None if b is None else b.contiguous()
    return _BiasAct.apply(x, b, spec)


def _kernel(mode: int, x: torch.Tensor, b: torch.Tensor | None, xref: torch.Tensor | None,
            yref: torch.Tensor | None, dy: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
    """mode 0: forward; 1: ``x`` is dy, returns dx; 2: ``x`` is d(dx), returns the second-order term for x."""
    if spec.backend == "cuda":
        # the kernel walks all tensors in one dense layout: that of the forward input (kept as x or y)
        fmt = extension.memory_format_of(next(t for t in (yref, xref, x) if t is not None))
        x, xref, yref, dy = (None if t is None else t.contiguous(memory_format=fmt) for t in (x, xref, yref, dy))
        return extension.kernel("bias_act")(x, b, xref, yref, dy, mode, spec.dim, spec.info.code, spec.alpha,
                                            spec.gain, -1.0 if spec.clamp is None else spec.clamp)
    if mode == 0:
        return _ref_forward(x, b, spec)
    if mode == 1:
        return _ref_grad(x, b, xref, yref, spec)
    return _ref_grad2(x, dy, b, xref, yref, spec)


def _bias_view(b: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    return b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])


def _ref_forward(x: torch.Tensor, b: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
    g = spec.gain
    if spec.info.homogeneous and g > 0:
        # g * act(x + b) == act(g * x + g * b): bias and gain in one pass, activation and clamp in place
        y = x * g if b is None else torch.add(_bias_view(b, x, spec.dim) * g, x, alpha=g)
        if spec.act == "relu":
            y.relu_()
        elif spec.act == "lrelu":
            F.leaky_relu_(y, spec.alpha)
    else:
        u = x if b is None else x + _bias_view(b, x, spec.dim)
        y = _ACT_FUNCS[spec.act](u, spec.alpha)
        if g != 1:
            y.mul_(g)
    if spec.clamp is not None:
        y.clamp_(-spec.clamp, spec.clamp)
    return y


def _ref_grad(dy: torch.Tensor, b: torch.Tensor | None, xref: torch.Tensor | None, yref: torch.Tensor | None,
              spec: _Spec) -> torch.Tensor:
    g = spec.gain
    if g == 0:
        return torch.zeros_like(dy)
    if spec.info.uses_x:
        u = xref if b is None else xref + _bias_view(b, xref, spec.dim)
        dx = _aten.silu_backward(dy, u)
    elif spec.act == "linear":
        dx = dy * g if g != 1 else dy
        g = 1.0
    else:
        y0 = yref if spec.info.homogeneous and g > 0 else yref / g  # relu/lrelu only need the sign
        dx = _ACT_GRADS[spec.act](dy, y0, spec.alpha)
    if g != 1:
        dx = dx.mul_(g)
    if spec.clamp is not None:
        dx = _aten.hardtanh_backward(dx, yref, -spec.clamp, spec.clamp)  # 0 where |y| >= clamp
    return dx


def _ref_grad2(d_dx: torch.Tensor, dy: torch.Tensor, b: torch.Tensor | None, xref: torch.Tensor,
               yref: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
    g = spec.gain
    if g == 0:
        return torch.zeros_like(d_dx)
    if spec.info.uses_x:
        u = xref if b is None else xref + _bias_view(b, xref, spec.dim)
        s = torch.sigmoid(u)
        second = s * (1 - s) * (2 + u * (1 - 2 * s))  # d^2/du^2 of u * sigmoid(u)
    else:
        second = _ACT_SECOND[spec.act](yref / g)
    out = d_dx * dy * second * g
    if spec.clamp is not None:
        out = _aten.hardtanh_backward(out, yref, -spec.clamp, spec.clamp)
    return out


_ACT_FUNCS = {
    "linear": lambda u, a: u.clone(),
    "relu": lambda u, a: F.relu(u),
    "lrelu": lambda u, a: F.leaky_relu(u, a),
    "tanh": lambda u, a: torch.tanh(u),
    "sigmoid": lambda u, a: torch.sigmoid(u),
    "elu": lambda u, a: F.elu(u),
    "selu": lambda u, a: F.selu(u),
    "softplus": lambda u, a: F.softplus(u),
    "swish": lambda u, a: F.silu(u),
}

# act'(u) * dy from the un-scaled output y0 = act(u) (aten's fused backward kernels, one pass each).
_ACT_GRADS = {
    "relu": lambda dy, y0, a: _aten.threshold_backward(dy, y0, 0),
    "lrelu": lambda dy, y0, a: _aten.leaky_relu_backward(dy, y0, a, False),
    "tanh": lambda dy, y0, a: _aten.tanh_backward(dy, y0),
    "sigmoid": lambda dy, y0, a: _aten.sigmoid_backward(dy, y0),
    "elu": lambda dy, y0, a: _aten.elu_backward(dy, 1.0, 1.0, 1.0, True, y0),
    "selu": lambda dy, y0, a: _aten.elu_backward(dy, _SELU_ALPHA, _SELU_SCALE, 1.0, True, y0),
    "softplus": lambda dy, y0, a: dy * -torch.expm1(-y0),  # sigmoid(u) = 1 - exp(-softplus(u))
}

# act''(u) from y0 = act(u), for the smooth activations that are invertible on their output.
_ACT_SECOND = {
    "tanh": lambda y0: -2 * y0 * (1 - y0 * y0),
    "sigmoid": lambda y0: y0 * (1 - y0) * (1 - 2 * y0),
    "elu": lambda y0: torch.where(y0 > 0, 0, y0 + 1),
    "selu": lambda y0: torch.where(y0 > 0, 0, y0 + _SELU_SCALE * _SELU_ALPHA),
    "softplus": lambda y0: -torch.expm1(-y0) * torch.exp(-y0),
}


def _reduce_to_bias(dx: torch.Tensor, dim: int) -> torch.Tensor:
    return dx.sum(dim=[i for i in range(dx.ndim) if i != dim])


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
        y = _kernel(0, x, b, None, None, None, spec)
        ctx.spec = spec
        ctx.save_for_backward(x if spec.keeps_x else None, b if spec.keeps_x else None, y if spec.keeps_y else None)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        spec: _Spec = ctx.spec
        x, b, y = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            trivial = spec.act == "linear" and spec.gain == 1 and spec.clamp is None
            dx = dy if trivial else _BiasActGrad.apply(dy, x, b, y, spec)
        if ctx.needs_input_grad[1]:
            db = _reduce_to_bias(dx, spec.dim)
        return dx, db, None


class _BiasActGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy: torch.Tensor, x: torch.Tensor | None, b: torch.Tensor | None, y: torch.Tensor | None,
                spec: _Spec) -> torch.Tensor:
        ctx.spec = spec
        ctx.save_for_backward(dy if spec.info.smooth else None, x, b, y)
        return _kernel(1, dy, b, x, y, None, spec)

    @staticmethod
    def backward(ctx, d_dx: torch.Tensor):
        spec: _Spec = ctx.spec
        dy, x, b, y = ctx.saved_tensors
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActGrad.apply(d_dx, x, b, y, spec)
        if spec.info.smooth and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = _kernel(2, d_dx, b, x, y, dy, spec)
            if ctx.needs_input_grad[2]:
                d_b = _reduce_to_bias(d_x, spec.dim)
        return d_dy, d_x, d_b, None, None
