"""Synthetic action clips for the tiny preset (spec cmpl.md §8): an actor whose *motion* is the class.

Each clip is T frames of S x S RGB (uint8), rendered with numpy from a seed:

- background: a 4x4 colour grid upsampled to S, scaled 0.3, plus a per-clip offset; N(0, 0.03) pixel noise per frame;
- a distractor disk (radius U(2, 4)) on a Brownian walk (N(0, 1) px per frame, clipped to the frame);
- the actor (square, disk or triangle; random colour; radius r0 ~ U(2.5, 4)) moving by the class's pattern,
  speed v ~ U(0.8, 1.5), t counted from the middle frame:
  right / left / down / up: centre (cx, cy) ~ U(10, 22)^2 (in a 32 px frame) and x or y +- v (t - T/2);
  clockwise / counter-clockwise: around the frame centre at radius U(5, 8), angle = phase +- 0.5 v t;
  grow / shrink: radius 1.5 + 0.35 v t, or max(1, 7.5 - 0.35 v t).

With ``appearance`` the class is (motion, actor shape): ``len(MOTIONS) x len(SHAPES)`` classes, so the appearance
matters too (spec §8.2: more classes, so that FixMatch has the weak start it has at paper scale). A horizontal flip
changes left and right and the turning direction: it is not label-preserving here (spec §7a).
"""

from __future__ import annotations

import numpy as np

MOTIONS = ("right", "left", "down", "up", "clockwise", "counterclockwise", "grow", "shrink")
SHAPES = ("square", "disk", "triangle")


def num_classes(appearance: bool) -> int:
    return len(MOTIONS) * (len(SHAPES) if appearance else 1)


def _mask(kind: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if kind == "disk":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= r / np.sqrt(2)) & (np.abs(dy) <= r / np.sqrt(2))
    return (dy <= r / 2) & (dy >= -r + np.sqrt(3) * np.abs(dx))  # upward triangle inside the radius-r circle


def actor_path(motion: str, t: np.ndarray, v: float, size: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Centre x, y per frame and (for grow / shrink) the radius per frame."""
    scale = size / 32
    centre = rng.uniform(10, 22, size=2) * scale
    tc = t - len(t) / 2
    x, y = np.full(len(t), centre[0]), np.full(len(t), centre[1])
    radius = None
    if motion in ("right", "left"):
        x = centre[0] + (1 if motion == "right" else -1) * v * tc * scale
    elif motion in ("down", "up"):
        y = centre[1] + (1 if motion == "down" else -1) * v * tc * scale
    elif motion in ("clockwise", "counterclockwise"):
        orbit, phase = rng.uniform(5, 8) * scale, rng.uniform(0, 2 * np.pi)
        angle = phase + (1 if motion == "clockwise" else -1) * 0.5 * v * t  # image y points down: +angle is clockwise
        x, y = size / 2 + orbit * np.cos(angle), size / 2 + orbit * np.sin(angle)
    elif motion == "grow":
        radius = (1.5 + 0.35 * v * t) * scale
    else:
        radius = np.maximum(1.0, 7.5 - 0.35 * v * t) * scale
    return x, y, radius


def motion_clips(num: int, seed: int, frames: int = 16, size: int = 32, appearance: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``num`` class-balanced clips (N, T, S, S, 3) uint8 and labels (N,) int64 (class = motion, or motion x shape
    with ``appearance``), shuffled; a pure function of its arguments."""
    rng = np.random.default_rng(seed)
    classes = num_classes(appearance)
    labels = rng.permutation(np.arange(num) % classes).astype(np.int64)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    t = np.arange(frames, dtype=np.float64)
    clips = np.empty((num, frames, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        motion = MOTIONS[label % len(MOTIONS)]
        shape = SHAPES[label // len(MOTIONS)] if appearance else SHAPES[rng.integers(len(SHAPES))]
        grid = rng.uniform(0, 1, size=(4, 4, 3)).repeat(size // 4, 0).repeat(size // 4, 1)
        background = 0.3 * grid + rng.uniform(0, 0.4, size=3)
        colour = rng.uniform(0.4, 1.0, size=3)
        colour[rng.integers(3)] *= rng.uniform(0, 0.4)
        v, r0 = rng.uniform(0.8, 1.5), rng.uniform(2.5, 4) * size / 32
        x, y, radius = actor_path(motion, t, v, size, rng)
        distractor = rng.uniform(0.2, 0.8, size=2) * size
        d_radius, d_colour = rng.uniform(2, 4) * size / 32, rng.uniform(0.2, 1.0, size=3)
        for f in range(frames):
            frame = background + rng.normal(0, 0.03, size=background.shape)
            distractor = np.clip(distractor + rng.normal(0, 1, size=2), 0, size)
            frame[_mask("disk", xs, ys, *distractor, d_radius)] = d_colour
            frame[_mask(shape, xs, ys, x[f], y[f], r0 if radius is None else radius[f])] = colour
            clips[i, f] = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    return clips, labels
