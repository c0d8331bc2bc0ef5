"""Feature statistics of datasets and generators, on one process or many (stylegan2-ada-pytorch ``metric_utils``).

Distributed: rank r of W extracts items r, r + W, r + 2W, ... (wrapping around at the end, as the official
``item_subset``), every batch's features are gathered with ``common.dist.all_gather_cat`` and re-interleaved, so
every rank holds the statistics of items 0..n-1 in dataset order and computes the same metric value.
Generated images are converted as the official code does: ``(x * 127.5 + 128).clamp(0, 255)`` then a truncating
uint8 cast (round half up of x * 127.5 + 127.5). Unlike the official code, latents and labels are seeded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common import dist
from common.data import ImageDataset
from common.logging import Progress
from common.metrics.base import FeatureExtractor
from common.metrics.stats import FeatureStats, cache_path

Outputs = Callable[[Tensor], Tensor]


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> uint8, as stylegan2-ada-pytorch ``compute_feature_stats_for_generator``."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


class ArrayImages(torch.utils.data.Dataset):
    """Images from an ``.npz`` whose ``arr_0`` is uint8 ``(N, H, W, C)`` (the usual sample dump of GAN repos)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        with np.load(self.path, allow_pickle=False) as data:
            if "arr_0" not in data:
                raise ValueError(f"{self.path} has no 'arr_0' array (expected uint8 (N, H, W, C) images)")
            images = data["arr_0"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ValueError(f"{self.path}: arr_0 must be uint8 (N, H, W, 1|3), got {images.dtype} {images.shape}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(self.images[idx].transpose(2, 0, 1)), np.zeros([0], dtype=np.float32)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def identity(self) -> dict[str, Any]:
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "resolution": self.resolution, "count": len(self), "xflip": False}


def open_images(path: str | os.PathLike, use_labels: bool = False) -> torch.utils.data.Dataset:
    """A folder or zip of images (``common.data.ImageDataset``, no x-flip) or an ``.npz`` with ``arr_0``."""
    if str(path).endswith(".npz"):
        return ArrayImages(path)
    return ImageDataset(path, use_labels=use_labels, xflip=False)


def _gather_interleaved(batch: Tensor) -> Tensor:
    """Every rank's equally sized ``batch`` in item order: row i of rank r becomes row i * W + r."""
    world = dist.get_world_size()
    gathered = dist.all_gather_cat(batch.contiguous())
    return gathered.reshape(world, len(batch), *batch.shape[1:]).transpose(0, 1).reshape(-1, *batch.shape[1:])


def dataset_features(
    dataset: torch.utils.data.Dataset,
    extractor: FeatureExtractor,
    max_items: int | None = None,
    capture_all: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    outputs: Outputs | None = None,
) -> FeatureStats:
    """Statistics of ``outputs(images)`` (default ``extractor.extract``) over the first ``max_items`` items."""
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    world, rank = dist.get_world_size(), dist.get_rank()
    indices = [(i * world + rank) % num_items for i in range((num_items - 1) // world + 1)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers)
    outputs = outputs or extractor.extract
    stats = FeatureStats(extractor.protocol, capture_all=capture_all, max_items=num_items)
    with Progress(num_items, desc=f"features {getattr(dataset, 'name', 'dataset')}") as bar:
        for images, _labels in loader:
            before = stats.num_items
            stats.append(_gather_interleaved(outputs(images)))
            bar.update(stats.num_items - before)
    return stats


def real_stats(
    dataset: torch.utils.data.Dataset,
    extractor: FeatureExtractor,
    max_items: int | None = None,
    capture_all: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> FeatureStats:
    """:func:`dataset_features`, cached by dataset identity (path, resolution, count, x-flip), ``max_items`` and
    the extractor's protocol and sha256. Rank 0 writes the cache; every rank reads it (shared file system)."""
    key = {"dataset": dataset.identity(), "max_items": max_items, "protocol": extractor.protocol,
           "sha256": extractor.sha256}
    path = cache_path(f"{getattr(dataset, 'name', 'dataset')}-{extractor.name}", key, cache_dir)
    if cache:
        cached = FeatureStats.load(path) if dist.get_rank() == 0 and path.is_file() else None
        if dist.broadcast_object(cached is not None and (cached.capture_all or not capture_all)):
            dist.print0(f"real statistics from the cache {path}")
            return cached if cached is not None else FeatureStats.load(path)
    stats = dataset_features(dataset, extractor, max_items, capture_all, **kwargs)
    if cache and dist.get_rank() == 0:
        dist.print0(f"real statistics cached in {stats.save(path, key)}")
    dist.barrier()
    return stats


def _label_sampler(dataset: torch.utils.data.Dataset | None, c_dim: int, seed: int) -> Callable[[int], Tensor]:
    """Labels for conditional generators drawn uniformly from the dataset's labels (official), seeded."""
    if c_dim == 0:
        return lambda n: torch.zeros([n, 0])
    if dataset is None or not getattr(dataset, "has_labels", False):
        raise ValueError(f"the generator is conditional (c_dim={c_dim}); give a real dataset with labels")
    rng = np.random.RandomState(seed)
    return lambda n: torch.from_numpy(np.stack([dataset.get_label(rng.randint(len(dataset))) for _ in range(n)]))


@torch.no_grad()
def generator_features(
    G: nn.Module,
    extractor: FeatureExtractor,
    num_items: int,
    label_dataset: torch.utils.data.Dataset | None = None,
    capture_all: bool = False,
    batch_size: int = 64,
    batch_gen: int = 4,
    seed: int = 0,
    G_kwargs: dict[str, Any] | None = None,
    outputs: Outputs | None = None,
) -> FeatureStats:
    """Statistics of ``outputs(to_uint8(G(z, c)))`` for ``num_items`` images, z ~ N(0, I) seeded per rank.

    ``G``: ``z_dim``, ``c_dim`` attributes and ``G(z, c, **G_kwargs) -> (N, C, H, W)`` in [-1, 1] (StyleGAN2-ADA's
    interface). ``batch_size`` images per step are generated in sub-batches of ``batch_gen`` (official: 64 and 4).
    """
    if batch_size % batch_gen:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of batch_gen ({batch_gen})")
    device = next(G.parameters()).device
    rank_seed = seed * dist.get_world_size() + dist.get_rank()
    z_gen = torch.Generator(device=device).manual_seed(rank_seed)
    labels = _label_sampler(label_dataset, G.c_dim, rank_seed)
    outputs = outputs or extractor.extract
    stats = FeatureStats(extractor.protocol, capture_all=capture_all, max_items=num_items)
    with Progress(num_items, desc="features generator") as bar:
        while not stats.is_full():
            images = []
            for _ in range(batch_size // batch_gen):
                z = torch.randn([batch_gen, G.z_dim], device=device, generator=z_gen)
                images.append(to_uint8(G(z, labels(batch_gen).to(device), **(G_kwargs or {}))))
            before = stats.num_items
            stats.append(_gather_interleaved(outputs(torch.cat(images))))
            bar.update(stats.num_items - before)
    return stats
