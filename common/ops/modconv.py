"""Modulated (and demodulated) convolution of StyleGAN2 (Karras et al. 2020, Sec. 2.2, Eq. 1-3;
official ``training/networks.py: modulated_conv2d``).

Per sample n, with styles s (N, C_in) and weights w (C_out, C_in, kh, kw):

    modulation:    w'[n, o, i, k] = w[o, i, k] * s[n, i]
    demodulation:  w''[n, o, i, k] = w'[n, o, i, k] / sqrt(sum_{i, k} w'[n, o, i, k]^2 + 1e-8)
    output:        y[n] = conv2d_resample(x[n], w''[n]) (+ noise)

``fused_modconv=True`` runs exactly that as one grouped convolution (groups = N). ``False`` uses the shared
weights and moves the per-sample factors onto the activations: ``y = conv(x * s) * d + noise`` with
``d[n, o] = 1 / sqrt(sum_i s[n, i]^2 * sum_k w[o, i, k]^2 + 1e-8)`` (the same numbers, without per-sample weights).
The demodulation coefficients are computed as that (N, C_in) x (C_in, C_out) product in both modes.
For float16 activations the official code first scales w by ``1 / (sqrt(C_in kh kw) max|w[o]|)`` and s by
``1 / max|s[n]|`` to avoid overflow; demodulation cancels both factors, and so do we.
"""

from __future__ import annotations

import math

import torch

from common.ops.conv import conv2d_resample
from common.ops.resample import Padding

__all__ = ["fma", "modulated_conv2d"]


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c in one op (``torch.addcmul``), broadcasting; gradients are summed back to each input's shape."""
    return torch.addcmul(c, a, b)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, down: int = 1, padding: Padding = 0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """Style-modulated convolution (see the module docstring).

    x: (N, C_in, H, W); weight: (C_out, C_in, kh, kw); styles: (N, C_in); noise: broadcastable to the output, e.g.
    (N, 1, H', W'), or None; up/down/padding/resample_filter/flip_weight: as in ``conv2d_resample``.
    Returns (N, C_out, H', W') in the dtype of ``x``.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_channels or styles.shape != (batch, in_channels):
        raise ValueError(f"shapes do not match: x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
                         f"styles {tuple(styles.shape)} (expected ({batch}, {in_channels}))")
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(in_channels * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (N, C_out)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate and noise is not None:
            return fma(x, dcoefs.to(x.dtype).reshape(batch, -1, 1, 1), noise.to(x.dtype))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # (N, C_out, C_in, kh, kw)
    if demodulate:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_channels, kh, kw).to(x.dtype),
                        f=resample_filter, up=up, down=down, padding=padding, groups=batch, flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)
