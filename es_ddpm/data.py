"""Images in and out: training/reference data, and the generator-sample contract of the official sampler (spec §4).

npz contract (spec §9.9): ``arr_0`` uint8 (N, H, W, C) in [0, 255] -> float32 (N, C, H, W) in [-1, 1] via x/255·2-1;
``arr_1`` optional int labels (the official loader substitutes zeros; here a class-conditional model without
``arr_1`` is an error, spec pitfall 5). Image folders are read in the official order: by the integer prefix when
names look like ``123_label_45.png``, else lexically; grey images become 3 channels for RGB models, alpha is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from common.data import DatasetError, ImageDataset, digits, shapes
from es_ddpm.config import DataConfig

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NUMBERED = re.compile(r"^(\d+)_")


class ArrayDataset(torch.utils.data.Dataset):
    """In-memory uint8 (N, C, H, W) images with integer labels, items shaped like :class:`ImageDataset`'s."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.resolution, self.num_channels = images.shape[-1], images.shape[1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[idx], np.asarray(self.labels[idx], dtype=np.int64)


def load_training_data(cfg: DataConfig, split: str = "train", seed: int = 0) -> torch.utils.data.Dataset:
    """The training images (``split='train'``) or the ``holdout`` images kept out of training (``'holdout'``)."""
    if cfg.source == "path":
        if not cfg.path:
            raise DatasetError("data.source is 'path' but data.path is empty; set data.path=DATASET.zip or a folder")
        if split == "holdout":
            raise DatasetError("a held-out split exists only for generated data (digits/shapes); give data.path")
        return ImageDataset(cfg.path, resolution=cfg.resolution, use_labels=False)
    resolution = cfg.resolution or 16
    if cfg.source == "digits":
        images, labels = digits(resolution)
    else:
        images, labels = shapes(cfg.num_images, resolution, seed=seed)
    order = np.random.default_rng(seed).permutation(len(images))
    if not 0 <= cfg.holdout < len(images):
        raise DatasetError(f"data.holdout={cfg.holdout} must be in 0..{len(images) - 1}")
    keep = order[len(order) - cfg.holdout:] if split == "holdout" else order[: len(order) - cfg.holdout]
    keep = np.sort(keep)
    return ArrayDataset(np.ascontiguousarray(images[keep].transpose(0, 3, 1, 2)), labels[keep])


def dataset_tensor(dataset: torch.utils.data.Dataset) -> Tensor:
    """All images of a dataset as one uint8 (N, C, H, W) tensor."""
    return torch.from_numpy(np.stack([np.asarray(dataset[i][0]) for i in range(len(dataset))]))


def to_model_range(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images -> float32 in [-1, 1] (x / 255 · 2 - 1)."""
    return torch.as_tensor(images).to(torch.float32) / 255.0 * 2.0 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] -> uint8 as the official sampler: ((x + 1) · 127.5).clamp(0, 255)."""
    return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8)


def load_npz_samples(path: str | os.PathLike, need_labels: bool = False) -> tuple[Tensor, Tensor | None]:
    """Generator samples of an npz (``arr_0`` uint8 NHWC, optional ``arr_1`` labels) -> (N, C, H, W) in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no npz of generator samples at {path}")
    with np.load(path) as data:
        if "arr_0" not in data:
            raise DatasetError(f"{path} has no 'arr_0' array (keys: {', '.join(data.files)}); save samples with "
                               "np.savez(path, images_uint8_nhwc[, labels])")
        images = data["arr_0"]
        labels = data["arr_1"] if "arr_1" in data else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}: arr_0 must be uint8 (N, H, W, 1|3), got {images.dtype} {images.shape}")
    if need_labels and labels is None:
        raise DatasetError(f"{path} has no 'arr_1' labels but the model is class-conditional; add the generator's "
                           "labels as arr_1 (the official code silently used class 0)")
    label_tensor = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return to_model_range(images.transpose(0, 3, 1, 2)), label_tensor


def save_npz_samples(path: str | os.PathLike, images: Tensor, labels: Tensor | None = None) -> Path:
    """Write uint8 NCHW ``images`` as the npz contract (``arr_0`` NHWC, ``arr_1`` labels if given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [images.permute(0, 2, 3, 1).cpu().numpy()]
    if labels is not None:
        arrays.append(labels.cpu().numpy())
    np.savez(path, *arrays)
    return path


def _folder_order(name: str) -> tuple[int, int | str]:
    match = _NUMBERED.match(name)
    return (0, int(match.group(1))) if match else (1, name)


def load_folder_samples(path: str | os.PathLike, channels: int) -> Tensor:
    """Images of a folder (official order, see module doc) -> (N, channels, H, W) in [-1, 1]."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"no image folder at {path}")
    names = sorted((p.name for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES), key=_folder_order)
    if not names:
        raise DatasetError(f"{path} holds no .png/.jpg/.jpeg images")
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(Image.open(path / name).convert(mode)) for name in names]
    if len({a.shape for a in arrays}) != 1:
        raise DatasetError(f"images in {path} have different sizes; resize them to one resolution first")
    stacked = np.stack(arrays)
    stacked = stacked[..., None] if stacked.ndim == 3 else stacked
    return to_model_range(stacked.transpose(0, 3, 1, 2))
