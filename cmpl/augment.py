"""Weak and strong views of a clip, the same parameters for every frame (spec cmpl.md §2.2, §7b).

Built from ``torchvision.transforms.v2`` on ``tv_tensors.Video`` (T, C, H, W): each transform draws its parameters
once per call, so a clip is cropped, flipped, erased and colour-changed as one image would be.

- weak (alpha): short-side resize + random resized crop + horizontal flip (paper scale, mmaction2's SlowOnly
  pipeline), or a random shift by ``pad`` pixels with edge padding and no flip (tiny: direction is the label, §7a);
- strong (S): weak + RandAugment (paper scale; magnitude 10 as in the semi-supervised reference code) or the tiny
  photometric set (brightness / saturation jitter, grayscale p 0.2, Gaussian noise), then Cutout: one square of
  ``cutout`` x the side, zeroed through all frames.

Output: float32 (C, T, H, W), normalised with mmaction2's ImageNet mean / std on the 0-255 scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

MEAN = (123.675, 116.28, 103.53)  # mmaction2 img_norm_cfg
STD = (58.395, 57.12, 57.375)


@dataclass
class AugmentConfig:
    """Views of a clip. ``resize`` null: no short-side resize (tiny); ``pad`` > 0: a shift instead of a resized
    crop; ``strong`` 'randaugment' (paper scale) or 'photometric' (tiny)."""

    resize: int | None = 256
    crop: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)  # mmaction2 RandomResizedCrop area_range
    pad: int = 0
    flip: bool = True
    strong: Literal["randaugment", "photometric"] = "randaugment"
    magnitude: int = 10
    cutout: float = 0.5  # side of the erased square / crop side
    noise: float = 0.03  # photometric: Gaussian noise sigma on [0, 1] pixels


def _spatial(cfg: AugmentConfig) -> list[v2.Transform]:
    ops: list[v2.Transform] = [v2.Resize(cfg.resize, antialias=True)] if cfg.resize else []
    if cfg.pad > 0:
        ops.append(v2.RandomCrop(cfg.crop, padding=cfg.pad, padding_mode="edge"))
    else:
        ops.append(v2.RandomResizedCrop(cfg.crop, scale=cfg.crop_scale, antialias=True))
    if cfg.flip:
        ops.append(v2.RandomHorizontalFlip())
    return ops


def _strong_ops(cfg: AugmentConfig) -> list[v2.Transform]:
    if cfg.strong == "randaugment":
        ops: list[v2.Transform] = [v2.RandAugment(magnitude=cfg.magnitude)]
    elif cfg.strong == "photometric":
        ops = [v2.ColorJitter(brightness=0.4, saturation=0.4), v2.RandomGrayscale(p=0.2), v2.ToDtype(torch.float32,
               scale=True), v2.GaussianNoise(sigma=cfg.noise, clip=True), v2.ToDtype(torch.uint8, scale=True)]
    else:
        raise ValueError(f"augment.strong is 'randaugment' or 'photometric', got {cfg.strong!r}")
    area = cfg.cutout**2
    return ops + [v2.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0)]


def _normalise(video: Tensor) -> Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((video.to(torch.float32) - mean) / std).permute(1, 0, 2, 3).contiguous()  # (C, T, H, W)


class ClipView:
    """uint8 (T, H, W, 3) frames -> float32 (C, T, H, W) through one ``transforms.v2`` pipeline (a class, not a
    closure, so that ``DataLoader`` workers can receive it under any start method)."""

    def __init__(self, transform: v2.Compose) -> None:
        self.transform = transform

    def __call__(self, frames: np.ndarray) -> Tensor:
        video = tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))
        return _normalise(self.transform(video))


def build_view(cfg: AugmentConfig, strong: bool) -> ClipView:
    """The weak view, or the strong one."""
    return ClipView(v2.Compose(_spatial(cfg) + (_strong_ops(cfg) if strong else [])))


def eval_view(cfg: AugmentConfig) -> ClipView:
    """Evaluation: short-side resize and a centre crop, no randomness."""
    ops: list[v2.Transform] = [v2.Resize(cfg.resize, antialias=True)] if cfg.resize else []
    return ClipView(v2.Compose(ops + [v2.CenterCrop(cfg.crop)]))
