"""Procedural street scenes for the tiny preset (spec §8): one layout sampler, two renderers.

Layouts: sky above a horizon at 30-45 % height, sidewalk below it, a perspective road trapezoid, 2-4 buildings on the
horizon, 1-3 vegetation discs near it and 1-3 cars on the road that grow with depth. The SOURCE renderer paints flat
class colours (small per-image jitter, faint noise); the TARGET renderer shifts the colour statistics (gamma and
contrast), adds per-class stripe textures, global brightness changes, strong noise and blur. Each target class keeps
its nearest source colour (an identity-swapping shift only yields confidently wrong pseudo-labels, spec §8).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

CLASSES = ("sky", "building", "road", "sidewalk", "vegetation", "car")
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR = range(6)
PALETTE = np.array(
    [[0.50, 0.70, 0.95], [0.55, 0.45, 0.40], [0.35, 0.35, 0.38], [0.75, 0.65, 0.60], [0.20, 0.60, 0.20],
     [0.80, 0.10, 0.10]],
    dtype=np.float32,
)
# per-class stripe texture of the target domain: (period in pixels, orientation in radians)
_STRIPES = ((9.0, 0.0), (4.0, 1.57), (6.0, 0.4), (3.0, 2.4), (5.0, 0.9), (7.0, 1.2))


def street_layout(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A (size, size) uint8 label map of one street scene."""
    s = size
    labels = np.full((s, s), SIDEWALK, dtype=np.uint8)
    horizon = int(rng.uniform(0.30, 0.45) * s)
    labels[:horizon] = SKY
    ys, xs = np.mgrid[0:s, 0:s]
    depth = np.clip((ys - horizon) / max(s - horizon, 1), 0.0, 1.0)
    centre = rng.uniform(0.4, 0.6) * s
    road = (ys >= horizon) & (np.abs(xs - centre) <= (0.04 + 0.46 * depth) * s)
    labels[road] = ROAD
    for _ in range(rng.randint(2, 5)):
        x0, width = rng.uniform(-0.1, 0.9) * s, rng.uniform(0.1, 0.3) * s
        top = horizon - rng.uniform(0.1, 0.28) * s
        labels[(xs >= x0) & (xs < x0 + width) & (ys >= top) & (ys < horizon + 0.02 * s)] = BUILDING
    for _ in range(rng.randint(1, 4)):
        cy, cx, r = horizon + rng.uniform(-0.06, 0.04) * s, rng.uniform(0, 1) * s, rng.uniform(0.04, 0.1) * s
        labels[(ys - cy) ** 2 + (xs - cx) ** 2 <= r * r] = VEGETATION
    for _ in range(rng.randint(1, 4)):
        t = rng.uniform(0.15, 0.9)
        cy = horizon + t * (s - horizon)
        half_road = (0.04 + 0.46 * t) * s
        cx = centre + rng.uniform(-0.6, 0.6) * half_road
        w = (0.06 + 0.2 * t) * s
        h = 0.6 * w
        labels[(np.abs(xs - cx) <= w / 2) & (np.abs(ys - cy) <= h / 2)] = CAR
    return labels


def render(labels: np.ndarray, rng: np.random.RandomState, domain: Literal["source", "target"]) -> np.ndarray:
    """An (H, W, 3) uint8 image of a label map in the source or the shifted target style."""
    palette = PALETTE.copy()
    if domain == "target":
        palette = np.clip(palette**1.4 * 0.9 + 0.06, 0.0, 1.0)
    palette = palette + rng.uniform(-0.05, 0.05, size=palette.shape).astype(np.float32)
    image = palette[labels]
    if domain == "source":
        image = image + rng.normal(0.0, 0.02, size=image.shape)
    else:
        ys, xs = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]].astype(np.float32)
        periods = np.array([p for p, _ in _STRIPES], dtype=np.float32)[labels]
        angles = np.array([a for _, a in _STRIPES], dtype=np.float32)[labels]
        phase = (xs * np.cos(angles) + ys * np.sin(angles)) / periods
        image = image + 0.15 * (np.floor(phase) % 2 * 2 - 1)[..., None]
        image = image + rng.uniform(-0.1, 0.1) + rng.normal(0.0, 0.10, size=image.shape)
        image = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0.8)
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def street_scenes(
    count: int, size: int, seed: int, domain: Literal["source", "target"]
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` scenes: images (N, H, W, 3) uint8 and labels (N, H, W) uint8, deterministic in ``seed``."""
    rng = np.random.RandomState(seed)
    labels = np.stack([street_layout(rng, size) for _ in range(count)])
    images = np.stack([render(lab, rng, domain) for lab in labels])
    return images, labels
