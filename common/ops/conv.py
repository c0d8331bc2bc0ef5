"""2-D convolution with FIR up/downsampling (StyleGAN2-ADA ``torch_utils/ops/conv2d_resample.py`` semantics).

``conv2d_resample(x, w, f, up, down, padding)`` equals, for the FIR filter ``f`` (true convolution unless
``flip_filter``) and the weights ``w`` (cross-correlation like ``F.conv2d`` unless ``flip_weight=False``):

    y = down_s( conv_w( conv_f( pad_P( up_z(x) ) ) ) )

where ``up_z`` inserts ``up - 1`` zeros after every sample and scales by ``up**2``, ``pad_P`` pads once with
``P = padding + [(fw + up - 1) // 2, (fw - up) // 2]`` (if up > 1) ``+ [(fw - down + 1) // 2, (fw - down) // 2]``
(if down > 1) per axis, ``conv_f`` is the filter applied once if up > 1 and once more if down > 1 ("valid"
outputs only), and ``down_s`` keeps every ``down``-th sample. With up = down = 1 the filter is not used.

Evaluation order (cheapest first, as in the official code): up > 1 runs a strided transposed convolution of the
weights and then the filter; down > 1 filters first and then runs a strided convolution; 1x1 kernels resample on the
smaller side of the channel mixing. All resampling goes through ``upfirdn2d``, so its CUDA kernel is used on GPU.
On CPU a resampling convolution of a 16x16 or larger input runs in channels_last and returns channels_last (same
values; see ``_nhwc_on_cpu``); everywhere else the result has the memory format of ``x``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.ops.resample import Padding, filter_size, pad_crop, parse_padding, upfirdn2d

__all__ = ["conv2d_resample"]

_NHWC_MIN_PIXELS = 16 * 16


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding: Padding = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """Convolve ``x`` ``(N, C_in, H, W)`` with ``w`` ``(C_out, C_in // groups, kh, kw)``, resampling with ``f``.

    f: filter from ``setup_filter`` (needed when up or down > 1); up/down: int factors; padding: int, [x, y] or
    [x0, x1, y0, y1] w.r.t. the upsampled image, applied once at the start; flip_weight: True = cross-correlation
    (``F.conv2d``), False = convolution; flip_filter: True = correlate with ``f``.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x and w must be 4-D, got {tuple(x.shape)} and {tuple(w.shape)}")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f"up and down must be ints >= 1, got {up!r}, {down!r}")
    if (up > 1 or down > 1) and f is None:
        raise ValueError("resampling (up or down > 1) needs a filter f, see setup_filter")
    if not isinstance(groups, int) or groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"x {tuple(x.shape)} and w {tuple(w.shape)} do not match groups={groups}")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kw == 1 and kh == 1 and down > 1 and up == 1:  # subsample first: the 1x1 conv then sees 1/down^2 pixels
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # mix channels before the upsampling
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:  # filter, then a strided convolution
        x, w = _nhwc_on_cpu(x, w)
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # The transposed convolution is the full convolution of the zero-inserted image with the weights; it starts
        # kh - 1 samples before the padded image and ends kh - up after it: move that into the filter's padding,
        # cropping the symmetric part through conv_transpose2d's own padding.
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        crop_x, crop_y = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        if flip_weight:  # cross-correlation == convolution with the flipped kernel, which conv_transpose2d computes
            wt = wt.flip([2, 3])
        x, wt = _nhwc_on_cpu(x, wt)
        x = F.conv_transpose2d(x, wt, stride=up, padding=[crop_y, crop_x], groups=groups)
        x = upfirdn2d(x, f, padding=[px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y], gain=up**2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    # up = down = 1: a plain convolution
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)
    return _conv(pad_crop(x, pad), w, groups=groups, flip_weight=flip_weight)


def _nhwc_on_cpu(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """On CPU, run a resampling convolution and its FIR pass in channels_last, and leave the result there.

    oneDNN reorders NCHW tensors to a blocked layout inside every convolution anyway, while NHWC is native to its
    convolution and depthwise kernels. Measured on one thread, forward + backward: 10-40% faster from 16x16 inputs
    up (e.g. 32x64x32x32 up: 246 vs 344 ms, down: 35 vs 58 ms), up to 10% slower at 8x8, hence the size threshold.
    Copying the result back to NCHW cost as much as the FIR pass (16x512x32x32 up: 206 ms next to an 810 ms
    convolution), and the layers after it (bias_act, noise, the next convolution) run as fast or faster on NHWC:
    a full cifar-width G+D iteration took 0.93-0.97x the time with the copy left out (``common.stylegan2.bench``).
    """
    if x.device.type != "cpu" or x.shape[2] * x.shape[3] < _NHWC_MIN_PIXELS:
        return x, w
    return x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: tuple[int, int] = (0, 0), groups: int = 1,
          flip_weight: bool = True) -> torch.Tensor:
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
