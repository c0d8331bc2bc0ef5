"""The three ways the FID implementations bring uint8 images to the Inception input (metrics.md §3).

Each mode maps uint8 ``(N, C, H, W)`` to float32 ``(N, 3, 299, 299)`` in about [-1, 1]. They give different FIDs:
a table uses ONE mode, and statistics record theirs (``common.metrics.stats``) so they are never mixed.

- ``tf1`` (default; stylegan2-ada-pytorch's TorchScript detector, clean-fid's ``legacy_tensorflow``): float,
  TF1 ``resize_bilinear`` without half-pixel centres emulated by ``affine_grid``/``grid_sample``, then (x-128)/128.
- ``legacy_pytorch`` (pytorch-fid ``inception.py``): x/255, ``F.interpolate(bilinear, align_corners=False)``, 2x-1.
- ``clean`` (clean-fid ``resize.py``, ``mode="clean"``): PIL bicubic (anti-aliased) per channel on float
  images, clipped to [0, 255], then (x-128)/128.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

RESIZE_MODES = ("tf1", "legacy_pytorch", "clean")


def tf1_resize(x: Tensor, size: int = 299) -> Tensor:
    """TF1 ``tf.image.resize_bilinear(x, [size, size])`` (align_corners=False, no half-pixel centres) of float NCHW.

    TF1 samples output pixel i at input coordinate i * in/size; ``affine_grid`` with ``align_corners=False``
    samples at (i + 0.5) * in/size - 0.5, so the identity transform is shifted by (1/in - 1/size) in normalised
    units on each axis, and ``padding_mode='border'`` repeats the last row/column as TF does.
    """
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _pil_bicubic(images: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's resizer: each channel as a float32 'F' image, PIL bicubic to ``size``, clipped to [0, 255]."""
    out = np.empty((images.shape[0], images.shape[1], size, size), dtype=np.float32)
    for i, image in enumerate(images):
        for ch, plane in enumerate(image):
            resized = Image.fromarray(plane.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
            out[i, ch] = np.asarray(resized)
    return np.clip(out, 0.0, 255.0)


def to_rgb(images: Tensor) -> Tensor:
    """Grey ``(N, 1, H, W)`` repeated to three channels (stylegan2-ada-pytorch metric_utils); RGB unchanged."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def prepare_inception_input(images: Tensor, mode: str = "tf1", size: int = 299) -> Tensor:
    """uint8 ``(N, 1|3, H, W)`` -> float32 ``(N, 3, size, size)`` network input for the resize ``mode``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"feature extraction takes uint8 images (the official protocols); got {images.dtype}")
    images = to_rgb(images)
    if mode == "tf1":
        return (tf1_resize(images.to(torch.float32), size) - 128.0) / 128.0
    if mode == "legacy_pytorch":
        x = F.interpolate(images.to(torch.float32) / 255.0, size=(size, size), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0
    if mode == "clean":
        x = torch.from_numpy(_pil_bicubic(images.cpu().numpy(), size)).to(images.device)
        return (x - 128.0) / 128.0
    raise ValueError(f"unknown resize mode {mode!r}; choose one of {RESIZE_MODES}")
