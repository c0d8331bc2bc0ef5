"""Writing image datasets in the StyleGAN2-ADA layout (stylegan2_base.md §4).

The layout: uncompressed PNGs named ``{idx // 1000:05d}/img{idx:08d}.png`` and a root ``dataset.json``
``{"labels": [["00000/img00000000.png", 6], ...]}`` (or ``{"labels": null}``), either in a folder or
in a ZIP_STORED archive. ``common.data.ImageDataset`` reads both.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def archive_name(idx: int) -> str:
    """Relative path of image ``idx`` inside a dataset: 1000 images per sub-folder, as dataset_tool.py."""
    return f"{idx // 1000:05d}/img{idx:08d}.png"


def encode_png(image: np.ndarray) -> bytes:
    """Encode one uint8 image, (H, W), (H, W, 1) or (H, W, 3) HWC, as PNG bytes."""
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png", compress_level=0)
    return buffer.getvalue()


def write_image_archive(
    dest: str | os.PathLike,
    images: Iterable[np.ndarray],
    labels: Sequence[int] | Sequence[Sequence[float]] | None = None,
) -> Path:
    """Write HWC uint8 ``images`` (and optional int or float-vector ``labels``) in the official layout.

    ``dest`` ending in ``.zip`` gives a ZIP_STORED archive, anything else a folder. The archive is
    written to a temporary name of this process and renamed at the end, so an interrupted write never
    leaves a half-written dataset under ``dest``, and processes that generate the same dataset at once
    (torchrun ranks, parallel arms) do not disturb each other: the last rename wins with identical content.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    _remove(tmp)  # left by a killed writer that had this pid
    names: list[str] = []
    try:
        if dest.suffix.lower() == ".zip":
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for idx, image in enumerate(images):
                    names.append(archive_name(idx))
                    zf.writestr(names[-1], encode_png(np.asarray(image)))
                zf.writestr("dataset.json", _labels_json(names, labels))
        else:
            tmp.mkdir(parents=True, exist_ok=False)
            for idx, image in enumerate(images):
                names.append(archive_name(idx))
                path = tmp / names[-1]
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(encode_png(np.asarray(image)))
            (tmp / "dataset.json").write_text(_labels_json(names, labels))
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and dest.is_dir():  # a concurrent writer's folder is already in place (a zip just replaces)
        _remove(tmp)
        return dest
    os.replace(tmp, dest)
    return dest


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _labels_json(names: list[str], labels: Sequence | None) -> str:
    if labels is None:
        return json.dumps({"labels": None})
    if len(labels) != len(names):
        raise ValueError(f"got {len(labels)} labels for {len(names)} images")
    entries = []
    for name, label in zip(names, labels):
        value = np.asarray(label)
        entries.append([name, int(value) if value.ndim == 0 else [float(v) for v in value]])
    return json.dumps({"labels": entries})
