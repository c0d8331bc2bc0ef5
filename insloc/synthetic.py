"""Procedural data for InsLoc's tiny preset (spec insloc.md §8.1), made offline with numpy from a seed:

- :func:`object_images`: the ImageNet stand-in, one textured shape per image (families: disk, square, triangle, ring,
  cross, star; textures: solid, stripes, checker; random colours) covering 55-90 % of the side, on a dimmed clutter
  background;
- :func:`detection_scenes`: the COCO stand-in, scenes with 1-3 objects of the same families (sides 12-44 px,
  log-aspect within +-0.4, pairwise IoU < 0.2) on clutter, with COCO-format annotations (category = family);
- :func:`write_scenes`: a scene split as ``images/*.png`` + ``instances.json``, the layout users' COCO data has.

Clutter: a 4x4 colour grid upsampled bilinearly to the image, plus random 2-px strokes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FAMILIES = ("disk", "square", "triangle", "ring", "cross", "star")
TEXTURES = ("solid", "stripes", "checker")


def clutter(size: int, rng: np.random.Generator, strokes: int = 6) -> np.ndarray:
    """(size, size, 3) float background in [0, 1]."""
    grid = rng.uniform(0, 1, (4, 4, 3)).astype(np.float32)
    image = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(strokes):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
        cv2.line(image, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), colour, 2)
    return image


def shape_mask(family: str, width: int, height: int) -> np.ndarray:
    """Boolean (height, width) mask of ``family`` filling its box."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (xs + 0.5) / width * 2 - 1, (ys + 0.5) / height * 2 - 1  # [-1, 1] in the box
    r = np.sqrt(u * u + v * v)
    if family == "disk":
        return r <= 1
    if family == "square":
        return np.ones((height, width), dtype=bool)
    if family == "triangle":
        return (v >= -1) & (np.abs(u) <= (v + 1) / 2)
    if family == "ring":
        return (r <= 1) & (r >= 0.55)
    if family == "cross":
        return (np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)
    angle = np.arctan2(v, u)  # star: five points
    return r <= 0.45 + 0.55 * np.abs(np.cos(2.5 * angle))


def textured(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) colours of a textured object (its mask decides where it is drawn)."""
    h, w = mask.shape
    a, b = rng.uniform(0.2, 1, 3), rng.uniform(0, 1, 3)
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    ys, xs = np.mgrid[0:h, 0:w]
    period = int(rng.integers(3, 7))
    if texture == "solid":
        pick = np.zeros((h, w), dtype=bool)
    elif texture == "stripes":
        pick = ((xs + ys) // period) % 2 == 1
    else:
        pick = ((xs // period) + (ys // period)) % 2 == 1
    return np.where(pick[..., None], b, a).astype(np.float32)


def paste(image: np.ndarray, family: str, box: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Draw ``family`` into ``box`` (x1, y1, x2, y2) of ``image``; returns the object's full-image mask."""
    x1, y1, x2, y2 = box
    mask = shape_mask(family, x2 - x1, y2 - y1)
    region = image[y1:y2, x1:x2]
    region[mask] = textured(mask, rng)[mask]
    full = np.zeros(image.shape[:2], dtype=bool)
    full[y1:y2, x1:x2] = mask
    return full


def object_images(count: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(count, size, size, 3) uint8 images, one object each, and their families (count,)."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    families = rng.integers(len(FAMILIES), size=count)
    for i, family in enumerate(families):
        image = clutter(size, rng) * 0.5
        side = rng.uniform(0.55, 0.9) * size
        aspect = np.exp(rng.uniform(-0.3, 0.3))
        w, h = int(min(size, side * aspect)), int(min(size, side / aspect))
        x1, y1 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        paste(image, FAMILIES[family], (x1, y1, x1 + w, y1 + h), rng)
        images[i] = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    return images, families


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def detection_scenes(count: int, size: int = 96, seed: int = 0) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    """(count, size, size, 3) uint8 scenes and, per scene, its objects ``{"box": [x1, y1, x2, y2], "family": k,
    "mask": bool (size, size)}`` (1-3 objects, sides 12-44 px, log-aspect +-0.4, pairwise IoU < 0.2)."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    scenes = []
    for i in range(count):
        image = clutter(size, rng)
        objects: list[dict[str, Any]] = []
        for _ in range(int(rng.integers(1, 4))):
            for _try in range(20):
                side, aspect = rng.uniform(12, 44), np.exp(rng.uniform(-0.4, 0.4))
                w, h = int(round(min(44, side * aspect))), int(round(min(44, side / aspect)))
                x1, y1 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                box = (x1, y1, x1 + w, y1 + h)
                if all(_iou(box, tuple(o["box"])) < 0.2 for o in objects):
                    family = int(rng.integers(len(FAMILIES)))
                    objects.append({"box": list(box), "family": family,
                                    "mask": paste(image, FAMILIES[family], box, rng)})
                    break
        images[i] = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
        scenes.append(objects)
    return images, scenes


def write_scenes(folder: str | Path, images: np.ndarray, scenes: list[list[dict[str, Any]]]) -> Path:
    """``folder/images/<id>.png`` and ``folder/instances.json`` (COCO instances: boxes x, y, w, h; ``segmentation``
    the outer contours of the object's mask as polygons; category = family + 1)."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records, annotations = [], []
    for i, (image, objects) in enumerate(zip(images, scenes), start=1):
        name = f"{i:06d}.png"
        cv2.imwrite(str(folder / "images" / name), image[:, :, ::-1])
        records.append({"id": i, "file_name": name, "width": image.shape[1], "height": image.shape[0]})
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            contours, _ = cv2.findContours(obj["mask"].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": obj["family"] + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(obj["mask"].sum()), "iscrowd": 0,
                                "segmentation": polygons})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(FAMILIES)]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": records, "annotations": annotations, "categories": categories}))
    return path
