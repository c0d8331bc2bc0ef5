"""InsLoc's copy-and-paste composition (spec insloc.md §2.1; official ``CopyAndPaste``,
``mmdet/datasets/pipelines/copy_and_paste.py``).

One view of a foreground image:

1. a RandomResizedCrop-style box of the foreground at its own resolution: area fraction ~ U(0.2, 1), aspect ratio
   log-uniform in (0.5, 2), 10 tries, then the centre-crop fallback (torchvision's ``RandomResizedCrop.get_params``);
2. a target (w, h), each ~ randint(128, 255) (upper bound excluded), and ``mmcv.imrescale(crop, (w, h))``: the crop
   KEEPS its aspect ratio, scaled by min(max(w, h) / long edge, min(w, h) / short edge), sizes rounded half up;
3. pasted (hard, no blending) at a uniform top-left corner onto a background image resized to 256 x 256 without
   keeping its aspect; the ground-truth box is [x1, y1, x1 + w, y1 + h] (absolute pixels, exclusive end).

Resizing is bilinear through OpenCV, as mmcv's ``imresize``. Colour augmentation and the flip come afterwards, per
view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class CompositionConfig:
    """Official values: ``base_scale`` (256, 256), ``w_range = h_range = fore_scale`` (128, 255), RRC ``scale``
    (0.2, 1.0) (CopyAndPaste's default) and ``ratio`` (0.5, 2.0) (config)."""

    base_scale: int = 256
    fore_scale: tuple[int, int] = (128, 255)
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (0.5, 2.0)


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop box: torchvision's ``get_params`` logic (10 tries, then a centre crop
    at the clamped aspect ratio)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def rescale_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """(new_h, new_w) of ``mmcv.imrescale`` with a tuple scale: keep the aspect ratio, long edge <= max(target),
    short edge <= min(target); ``int(x * factor + 0.5)``."""
    factor = min(max(target) / max(height, width), min(target) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def compose(foreground: np.ndarray, background: np.ndarray, cfg: CompositionConfig, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """One view: uint8 (S, S, 3) composite and its box float32 [x1, y1, x2, y2] (S = ``cfg.base_scale``)."""
    size = cfg.base_scale
    canvas = cv2.resize(background, (size, size), interpolation=cv2.INTER_LINEAR)
    top, left, h, w = crop_box(*foreground.shape[:2], cfg.crop_scale, cfg.crop_ratio, rng)
    crop = foreground[top : top + h, left : left + w]
    target = (int(rng.integers(*cfg.fore_scale)), int(rng.integers(*cfg.fore_scale)))
    new_h, new_w = rescale_size(h, w, target)
    pasted = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    # official: np.random.randint(0, 256 - side), upper bound excluded
    y1, x1 = int(rng.integers(0, max(size - new_h, 1))), int(rng.integers(0, max(size - new_w, 1)))
    canvas[y1 : y1 + new_h, x1 : x1 + new_w] = pasted
    return canvas, np.array([x1, y1, x1 + new_w, y1 + new_h], dtype=np.float32)
