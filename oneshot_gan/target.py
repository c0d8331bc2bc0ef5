"""The target domain as the shared loop reads it: ONE reference image (or a few), as a StyleGAN2-ADA dataset.

The paper trains on a single image from the target set (one-shot; 5 or 10 for few-shot), resized to the model's
resolution (spec §4). Here a target is an image file, or a folder / zip of images for few-shot. Each image is
decoded with OpenCV (``cv2.imread``, EXIF orientation applied, grey and alpha images become RGB), centre-cropped to
its largest square and area-resized (``cv2.INTER_AREA``) to the model resolution. The result is written once to
``data/oneshot_targets/<name>-<hash of the pixels>-r<res>.zip``; the run's config points ``data.path`` there and
sets ``data.mirror`` so the real batch is the reference replicated with random x-flips (spec §2.3).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from common.data import DatasetError
from common.data.archive import write_image_archive
from common.data.dataset import ImageFiles, is_image_name
from common.paths import data_dir


def load_target_image(path: str | os.PathLike, resolution: int) -> np.ndarray:
    """One target image as (resolution, resolution, 3) uint8 RGB: decoded, centre square, INTER_AREA resized."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"target image '{path}' does not exist; give the path of one image (or a folder of a few)")
    return decode_target(path.read_bytes(), str(path), resolution)


def decode_target(data: bytes, name: str, resolution: int) -> np.ndarray:
    """:func:`load_target_image` of encoded bytes (``name`` for the error line)."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise DatasetError(f"target image '{name}' cannot be decoded (not an image, or truncated); give a PNG or JPEG")
    return square_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), resolution)


def square_resize(rgb: np.ndarray, resolution: int) -> np.ndarray:
    """The largest centred square of an (H, W, 3) image, resized to ``resolution`` with pixel-area averaging."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    if side == resolution:
        return square
    interpolation = cv2.INTER_AREA if side > resolution else cv2.INTER_CUBIC
    return cv2.resize(square, (resolution, resolution), interpolation=interpolation)


def target_images(target: str | os.PathLike, resolution: int) -> np.ndarray:
    """(K, R, R, 3) uint8: the image ``target``, or every image of a folder / zip (sorted names) for few-shot."""
    path = Path(target)
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
        files = ImageFiles(path)  # the dataset reader's file list (sorted image names); one line if it has none
        images = []
        for name in files.names:
            with files.open(name) as file:
                images.append(decode_target(file.read(), f"{path}/{name}", resolution))
        files.close()
        return np.stack(images)
    if path.is_file() and not is_image_name(path.name):
        raise DatasetError(f"target '{path}' is not an image file (PNG, JPEG, ...) nor a folder or zip of images")
    return load_target_image(path, resolution)[None]


def target_dataset(target: str | os.PathLike, resolution: int) -> Path:
    """The target as a dataset zip under ``data/oneshot_targets/`` (written once; named by its pixels' hash)."""
    images = target_images(target, resolution)
    key = hashlib.sha256(images.tobytes()).hexdigest()[:12]
    dest = data_dir() / "oneshot_targets" / f"{Path(target).stem}-{key}-r{resolution}.zip"
    if not dest.is_file():
        write_image_archive(dest, images)
    return dest
