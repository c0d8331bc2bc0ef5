"""FIR resampling of image batches: ``upfirdn2d`` and its wrappers (StyleGAN2-ADA ``torch_utils/ops/upfirdn2d.py``).

``upfirdn2d(x, f, up, down, padding)`` does, per channel (like ``scipy.signal.upfirdn`` in 2-D):
  1. upsample by inserting ``up - 1`` zeros after every sample,
  2. pad with zeros (negative padding crops), ``[x0, x1, y0, y1]`` relative to the upsampled image,
  3. convolve with the FIR filter ``f`` (true convolution; ``flip_filter=True`` correlates instead), keeping only
     the outputs whose footprint lies inside the padded image,
  4. keep every ``down``-th sample,
and multiplies by ``gain``. Output size per axis: ``(in * up + pad0 + pad1 - taps) // down + 1``.

A 2-D filter ``[fh, fw]`` is applied as is; a 1-D filter ``[taps]`` is separable (``f (x) f``), applied along x then
y, with the whole ``gain`` on the first pass.

Reference path (CPU and fallback): one depthwise convolution per pass without materialising the zero-inserted or
padded image: up > 1 is a strided transposed convolution (which skips the inserted zeros), down > 1 a strided
convolution (which skips the dropped outputs), and padding is the convolution's own where it is symmetric. It
keeps the memory format of ``x`` (channels_last inputs run oneDNN's fast NHWC depthwise kernels). The official
reference instead convolves the zero-inserted, padded image with the 2-D filter and then subsamples; on one CPU
thread our path takes 0.38-0.57x of its time for upsample2d and 0.23-0.56x for downsample2d on StyleGAN2 shapes
(``python -m common.ops.bench``, table in ``common/ops/README.md``). Gradients of any order come from autograd.
Short 1-D filters are best expanded to 2-D (``setup_filter``'s default): one 4x4 depthwise pass measured faster
than two 4-tap passes (e.g. up by 2 at 16x512x32x32: 178 vs 296 ms NCHW, 66 vs 99 ms channels_last).

CUDA path: ``csrc/upfirdn2d.cu`` visits only the taps that hit real samples; its backward is ``upfirdn2d`` of the
output gradient with ``up``/``down`` swapped, the filter flipped and the padding
``[fw - x0 - 1, in_w * up_x - out_w * down_x + x0 - up_x + 1, ...]`` (the adjoint), so it is differentiable to any
order as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from common.ops import extension

__all__ = ["downsample2d", "filter2d", "setup_filter", "upfirdn2d", "upsample2d"]

FilterLike = torch.Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]] | float | None
IntPair = int | Sequence[int]
Padding = int | Sequence[int]
_CPU = torch.device("cpu")


def setup_filter(f: FilterLike, device: torch.device | str = _CPU, normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """A float32 FIR filter for ``upfirdn2d``: ``[fh, fw]`` (2-D) or ``[taps]`` (separable).

    ``f``: list/array/tensor of 1 or 2 dims, a scalar (impulse) or None (identity). ``separable=None`` keeps a 1-D
    filter of >= 8 taps separable and turns a shorter one into its outer product (the official rule, so
    ``setup_filter([1, 3, 3, 1])`` is ``outer([1, 3, 3, 1]) / 64``, the ``resample_filter`` buffer of official
    checkpoints). ``normalize`` divides by the sum (unit DC gain), ``flip_filter`` flips all axes and the result is
    scaled by ``gain ** (ndim / 2)``, i.e. by ``gain`` overall once applied along both axes.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty 1-D or 2-D array, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if separable and f.ndim != 1:
        raise ValueError("separable=True needs a 1-D filter")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return (f * (gain ** (f.ndim / 2))).to(device)


@dataclass(frozen=True)
class _Geometry:
    """Per-axis resampling parameters; padding is relative to the upsampled image."""

    up_x: int
    up_y: int
    down_x: int
    down_y: int
    pad_x0: int
    pad_x1: int
    pad_y0: int
    pad_y1: int
    flip_filter: bool
    gain: float

    def adjoint(self, in_hw: tuple[int, int], out_hw: tuple[int, int], fh: int, fw: int) -> _Geometry:
        """The transposed operator: maps output gradients to input gradients (same filter, flipped)."""
        (ih, iw), (oh, ow) = in_hw, out_hw
        return _Geometry(
            up_x=self.down_x, up_y=self.down_y, down_x=self.up_x, down_y=self.up_y,
            pad_x0=fw - self.pad_x0 - 1, pad_x1=iw * self.up_x - ow * self.down_x + self.pad_x0 - self.up_x + 1,
            pad_y0=fh - self.pad_y0 - 1, pad_y1=ih * self.up_y - oh * self.down_y + self.pad_y0 - self.up_y + 1,
            flip_filter=not self.flip_filter, gain=self.gain)


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be an int >= 1 or a pair [x, y] of them, got {value!r}")
    return pair  # type: ignore[return-value]


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    values = [int(v) for v in padding]
    if len(values) == 2:
        return values[0], values[0], values[1], values[1]
    if len(values) == 4:
        return values[0], values[1], values[2], values[3]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")


def pad_crop(x: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``x`` by ``[x0, x1, y0, y1]`` where positive, then crop where negative (in that order, so that a
    crop may reach into the padding)."""
    if any(p > 0 for p in pad):
        x = F.pad(x, [max(p, 0) for p in pad])
    if any(p < 0 for p in pad):
        x0, x1, y0, y1 = (max(-p, 0) for p in pad)
        x = x[:, :, y0:x.shape[2] - y1, x0:x.shape[3] - x1]
    return x


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(fw, fh) of a 2-D or separable filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError("f must be a 1-D or 2-D tensor (see setup_filter) or None")
    return int(f.shape[-1]), int(f.shape[0])


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: IntPair = 1, down: IntPair = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample ``x`` ``(N, C, H, W)`` per channel (see the module docstring).

    f: ``[fh, fw]``, ``[taps]`` (separable) or None (identity); up/down: int or [x, y]; padding: int, [x, y] or
    [x0, x1, y0, y1] w.r.t. the upsampled image (negative crops); impl: None/'auto', 'ref' or 'cuda'.
    Returns ``(N, C, (H * up_y + y0 + y1 - fh) // down_y + 1, (W * up_x + x0 + x1 - fw) // down_x + 1)``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a 4-D tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = filter_size(f)
    (up_x, up_y), (down_x, down_y) = _pair(up, "up"), _pair(down, "down")
    geo = _Geometry(up_x, up_y, down_x, down_y, *parse_padding(padding), bool(flip_filter), float(gain))
    if x.shape[2] * up_y + geo.pad_y0 + geo.pad_y1 < fh or x.shape[3] * up_x + geo.pad_x0 + geo.pad_x1 < fw:
        raise ValueError(f"the padded, upsampled image is smaller than the {fh}x{fw} filter (x {tuple(x.shape)}, "
                         f"up {up}, padding {padding})")
    backend = extension.select_backend("upfirdn2d", x, impl, cuda_supported=not f.requires_grad)
    if backend == "cuda":
        return _Upfirdn2dCuda.apply(x, f, geo)
    return _upfirdn2d_ref(x, f, geo)


def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    f = f.to(device=x.device, dtype=x.dtype)
    if f.ndim == 2:
        return _fir_pass(x, f * geo.gain, geo)
    x = _fir_pass(x, f[None, :] * geo.gain, replace(geo, up_y=1, down_y=1, pad_y0=0, pad_y1=0))
    return _fir_pass(x, f[:, None], replace(geo, up_x=1, down_x=1, pad_x0=0, pad_x1=0))


def _fir_pass(x: torch.Tensor, f: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """One depthwise pass with a 2-D filter ``f`` (gain already applied)."""
    channels = x.shape[1]
    fh, fw = f.shape
    up, down = (geo.up_y, geo.up_x), (geo.down_y, geo.down_x)
    if up == (1, 1):
        # y[o] = sum_k xpad[o * down + k] * g[k], g = correlation kernel: a strided depthwise conv2d
        weight = (f if geo.flip_filter else f.flip([0, 1]))[None, None].expand(channels, 1, fh, fw)
        sym_y, sym_x = max(0, min(geo.pad_y0, geo.pad_y1)), max(0, min(geo.pad_x0, geo.pad_x1))
        extra = [geo.pad_x0 - sym_x, geo.pad_x1 - sym_x, geo.pad_y0 - sym_y, geo.pad_y1 - sym_y]
        x = pad_crop(x, extra)  # the asymmetric rest of the padding
        return F.conv2d(x, weight, stride=down, padding=(sym_y, sym_x), groups=channels)
    # Transposed conv of x with the convolution kernel: out[j] = sum_i x[i] f[j - up * i] is the zero-inserted
    # signal convolved with f, without the zeros. It starts (fh - 1 - pad0) samples before our first output and
    # ends (fh - up - pad1) after our last; crop that (or zero-pad where negative).
    weight = (f.flip([0, 1]) if geo.flip_filter else f)[None, None].expand(channels, 1, fh, fw)
    start_y, end_y = fh - 1 - geo.pad_y0, fh - geo.up_y - geo.pad_y1
    start_x, end_x = fw - 1 - geo.pad_x0, fw - geo.up_x - geo.pad_x1
    crop_y, crop_x = max(0, min(start_y, end_y)), max(0, min(start_x, end_x))
    x = F.conv_transpose2d(x, weight, stride=up, padding=(crop_y, crop_x), groups=channels)
    x = pad_crop(x, [crop_x - start_x, crop_x - end_x, crop_y - start_y, crop_y - end_y])
    if down != (1, 1):
        x = x[:, :, ::geo.down_y, ::geo.down_x]
    return x


class _Upfirdn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, geo: _Geometry) -> torch.Tensor:
        f = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
        run = extension.kernel("upfirdn2d")
        g = geo
        if f.ndim == 2:
            y = run(x, f.contiguous(), g.up_x, g.up_y, g.down_x, g.down_y, g.pad_x0, g.pad_x1, g.pad_y0, g.pad_y1,
                    g.flip_filter, g.gain)
        else:
            y = run(x, f[None, :].contiguous(), g.up_x, 1, g.down_x, 1, g.pad_x0, g.pad_x1, 0, 0, g.flip_filter, g.gain)
            y = run(y, f[:, None].contiguous(), 1, g.up_y, 1, g.down_y, 0, 0, g.pad_y0, g.pad_y1, g.flip_filter, 1.0)
        ctx.save_for_backward(f)
        ctx.geo, ctx.in_hw = geo, (x.shape[2], x.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (f,) = ctx.saved_tensors
        fw, fh = filter_size(f)
        geo = ctx.geo.adjoint(ctx.in_hw, (dy.shape[2], dy.shape[3]), fh, fw)
        dx = _Upfirdn2dCuda.apply(dy, f, geo) if ctx.needs_input_grad[0] else None
        return dx, None, None


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """FIR-filter ``x`` keeping its size: ``upfirdn2d`` with padding ``[p + fw // 2, p + (fw - 1) // 2, ...]``.

    ``padding`` (int, [x, y] or [x0, x1, y0, y1]) is added on top, w.r.t. the output.
    """
    x0, x1, y0, y1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [x0 + fw // 2, x1 + (fw - 1) // 2, y0 + fh // 2, y1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: IntPair = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """Upsample ``x`` by ``up`` with FIR filter ``f``: output ``H * up`` (before ``padding``), gain ``up_x * up_y``.

    ``upfirdn2d`` padding ``[p + (fw + up - 1) // 2, p + (fw - up) // 2, ...]`` per axis, i.e. [2, 1] for 4 taps
    and up = 2; the gain keeps the DC level despite the inserted zeros.
    """
    up_x, up_y = _pair(up, "up")
    x0, x1, y0, y1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [x0 + (fw + up_x - 1) // 2, x1 + (fw - up_x) // 2, y0 + (fh + up_y - 1) // 2, y1 + (fh - up_y) // 2]
    return upfirdn2d(x, f, up=(up_x, up_y), padding=pad, flip_filter=flip_filter, gain=gain * up_x * up_y, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: IntPair = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """Downsample ``x`` by ``down`` after FIR filter ``f``: output ``H // down`` (before ``padding``).

    ``upfirdn2d`` padding ``[p + (fw - down + 1) // 2, p + (fw - down) // 2, ...]`` per axis, i.e. [1, 1] for
    4 taps and down = 2.
    """
    down_x, down_y = _pair(down, "down")
    x0, x1, y0, y1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [x0 + (fw - down_x + 1) // 2, x1 + (fw - down_x) // 2, y0 + (fh - down_y + 1) // 2, y1 + (fh - down_y) // 2]
    return upfirdn2d(x, f, down=(down_x, down_y), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
