"""Images for the frozen encoder, read as the official ``extract_ghfeat.py`` reads them (spec ghfeat.md §4, §6).

The official script takes a text file of image paths, decodes each with OpenCV (BGR -> RGB), resizes it to E's input
with ``cv2.resize`` (bilinear, no crop: align faces first, genforce/idinvert#10) and scales to [-1, 1]. Here the
source may also be a folder or a StyleGAN2-ADA zip (with its ``dataset.json`` labels for the probes).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from common.data import DatasetError
from common.data.dataset import ImageFiles


def _decode(data: bytes, name: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot decode image '{name}' (not an image OpenCV reads); remove it from the list")
    return image[:, :, ::-1]


def image_sources(source: str | os.PathLike) -> tuple[list[str], ImageFiles | None, np.ndarray | None]:
    """The images of ``source``: one image file, an image list ``.txt`` (one path per line, the official
    IMAGE_LIST), a folder or a zip. Returns the names, the dataset's files (None for a list or a file) and its
    ``dataset.json`` labels (or None)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() not in (".txt", ".zip"):
        return [str(path)], None, None  # one image file
    if path.suffix == ".txt" and path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"image list '{path}' is empty; write one image path per line")
        missing = [n for n in names if not Path(n).is_file()]
        if missing:
            raise DatasetError(f"image list '{path}': {len(missing)} path(s) do not exist, e.g. '{missing[0]}'")
        return names, None, None
    files = ImageFiles(path)
    if not files.names:
        raise DatasetError(f"'{path}' holds no images")
    return list(files.names), files, files.labels()


def load_images(source: str | os.PathLike, size: int, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """uint8 (N, 3, size, size) RGB images of ``source`` (see :func:`image_sources`), bilinear-resized, and names."""
    names, files, _ = image_sources(source)
    names = names[:limit] if limit else names
    images = np.empty((len(names), 3, size, size), dtype=np.uint8)
    for i, name in enumerate(names):
        if files is not None:
            with files.open(name) as f:
                data = f.read()
        else:
            data = Path(name).read_bytes()
        image = _decode(data, name)
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        images[i] = image.transpose(2, 0, 1)
    return images, names
