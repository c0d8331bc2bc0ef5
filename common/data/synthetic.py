"""Offline image data for tiny presets and tests: coloured shapes (with their factors), scikit-learn's digits and
its two sample photos.

Both are deterministic functions of their arguments (seeded), need no download, and can be written once in
the StyleGAN2-ADA dataset layout under ``data/`` (see :func:`shapes_dataset`, :func:`digits_dataset`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from common.data.archive import write_image_archive
from common.paths import data_dir

SHAPE_CLASSES = ("circle", "square", "triangle", "ring")
_SUPERSAMPLE = 4  # render at 4x and box-downsample for anti-aliased edges


def _check_resolution(resolution: int) -> None:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")


def _shape_mask(
    kind: int, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, size: float, angle: float
) -> np.ndarray:
    """Boolean mask of one shape on the (H, W) coordinate grids ``xs``, ``ys`` in [0, 1]."""
    dx, dy = xs - cx, ys - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # coordinates in the shape's rotated frame
    if SHAPE_CLASSES[kind] == "circle":
        return u * u + v * v <= size * size
    if SHAPE_CLASSES[kind] == "square":
        half = size / np.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if SHAPE_CLASSES[kind] == "triangle":
        # equilateral triangle inscribed in a circle of radius `size`: three half-planes
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            theta = angle + np.pi / 2 + 2 * np.pi * k / 3
            inside &= dx * np.cos(theta) + dy * np.sin(theta) >= -size / 2
        return inside
    r2 = u * u + v * v
    return (r2 <= size * size) & (r2 >= (0.55 * size) ** 2)


def shape_factors(num_images: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The factors of variation :func:`shapes` draws for ``(num_images, seed)``, at any resolution.

    ``shape`` (N,) int64 index into :data:`SHAPE_CLASSES`; ``size`` (N,) circumradius in image widths, uniform in
    [0.18, 0.34]; ``center`` (N, 2) x, y in [0, 1] (the shape stays inside the image); ``angle`` (N,) radians;
    ``foreground`` and ``background`` (N, 3) RGB in [0, 1] (foreground in [0.55, 1] with one channel scaled by
    [0, 0.5] for a saturated hue; background in [0, 0.45]). All from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    factors = {
        "shape": rng.integers(0, len(SHAPE_CLASSES), size=num_images).astype(np.int64),
        "size": np.empty(num_images),
        "center": np.empty((num_images, 2)),
        "angle": np.empty(num_images),
        "foreground": np.empty((num_images, 3)),
        "background": np.empty((num_images, 3)),
    }
    for i in range(num_images):
        size = rng.uniform(0.18, 0.34)
        factors["size"][i] = size
        factors["center"][i] = rng.uniform(size, 1 - size, size=2)
        factors["angle"][i] = rng.uniform(0, 2 * np.pi)
        factors["background"][i] = rng.uniform(0.0, 0.45, size=3)
        foreground = rng.uniform(0.55, 1.0, size=3)
        foreground[rng.integers(0, 3)] *= rng.uniform(0.0, 0.5)  # saturated, varied hues
        factors["foreground"][i] = foreground
    return factors


def shapes(
    num_images: int, resolution: int, seed: int = 0, return_masks: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_images`` RGB images of one coloured shape on a coloured background.

    Returns ``images`` (N, H, W, 3) uint8, ``labels`` (N,) int64 indices into :data:`SHAPE_CLASSES`, and with
    ``return_masks`` also ``masks`` (N, H, W) int64 per-pixel labels (0 background, class + 1 on the shape),
    thresholded at half coverage. Shape class, centre, size, rotation and both colours are :func:`shape_factors`
    of the same ``(num_images, seed)``.
    """
    _check_resolution(resolution)
    factors = shape_factors(num_images, seed)
    hi = resolution * _SUPERSAMPLE
    grid = (np.arange(hi) + 0.5) / hi
    xs, ys = np.meshgrid(grid, grid)
    images = np.empty((num_images, resolution, resolution, 3), dtype=np.uint8)
    labels = factors["shape"]
    masks = np.empty((num_images, resolution, resolution), dtype=np.int64) if return_masks else None
    for i, kind in enumerate(labels):
        (cx, cy), size, angle = factors["center"][i], factors["size"][i], factors["angle"][i]
        background, foreground = factors["background"][i], factors["foreground"][i]
        coverage = _shape_mask(int(kind), xs, ys, cx, cy, size, angle).astype(np.float64)
        coverage = coverage.reshape(resolution, _SUPERSAMPLE, resolution, _SUPERSAMPLE).mean(axis=(1, 3))
        pixels = background + coverage[..., None] * (foreground - background)
        images[i] = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
        if masks is not None:
            masks[i] = np.where(coverage >= 0.5, int(kind) + 1, 0)
    if masks is not None:
        return images, labels, masks
    return images, labels


def digits(resolution: int = 16, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels, shipped inside sklearn) at ``resolution``.

    Returns ``images`` (N, H, W, 1 or 3) uint8, white on black, resized with bicubic interpolation, and
    ``labels`` (N,) int64 in 0..9.
    """
    from sklearn.datasets import load_digits

    _check_resolution(resolution)
    bunch = load_digits()
    small = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    out = np.empty((len(small), resolution, resolution), dtype=np.uint8)
    for i, image in enumerate(small):
        out[i] = np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC))
    channels = 3 if rgb else 1
    return np.repeat(out[..., None], channels, axis=3), bunch.target.astype(np.int64)


def sample_photos(resolution: int) -> dict[str, np.ndarray]:
    """The two photos that ship with scikit-learn (``china.jpg``, ``flower.jpg``, 640x427), centre-cropped to a
    square and area-resized to ``resolution``: {name: (H, W, 3) uint8}. Offline one-shot targets (GenDA tiny)."""
    from sklearn.datasets import load_sample_image

    _check_resolution(resolution)
    photos = {}
    for name in ("china.jpg", "flower.jpg"):
        image = load_sample_image(name)
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = Image.fromarray(image[top : top + side, left : left + side])
        photos[name] = np.asarray(square.resize((resolution, resolution), Image.BOX))
    return photos


def shapes_dataset(num_images: int = 2000, resolution: int = 32, seed: int = 0) -> Path:
    """The :func:`shapes` images as a StyleGAN2-ADA zip with labels, generated once under ``data/``."""
    path = data_dir() / f"shapes-r{resolution}-n{num_images}-s{seed}.zip"
    if not path.exists():
        images, labels = shapes(num_images, resolution, seed)
        write_image_archive(path, images, labels)
    return path


def digits_dataset(resolution: int = 16, rgb: bool = False) -> Path:
    """The :func:`digits` images as a StyleGAN2-ADA zip with labels, generated once under ``data/``."""
    path = data_dir() / f"digits-r{resolution}-{'rgb' if rgb else 'grey'}.zip"
    if not path.exists():
        images, labels = digits(resolution, rgb)
        write_image_archive(path, images, labels)
    return path
