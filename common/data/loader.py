"""Endless per-rank batches of an image dataset, resumable at any item (StyleGAN2-ADA training data pipeline)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from common.data.sampler import InfiniteSampler


def infinite_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    start: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(images, labels)`` batches of ``batch_size`` for rank ``rank`` of ``world_size``, forever.

    With :class:`~common.data.ImageDataset`, images are uint8 (N, C, H, W) and labels float32 (N, label_dim).
    Indices come from :class:`InfiniteSampler` (seeded with ``seed``); ``start`` is the number of items this rank
    has already consumed (``batch_idx * batch_size`` on resume). The sampler runs in the main process, so the
    batches do not depend on ``num_workers``. The official loop uses 3 workers and pinned memory on GPU.
    """
    sampler = InfiniteSampler(len(dataset), rank=rank, num_replicas=world_size, seed=seed, start=start)
    # a private generator: creating the iterator draws a worker base seed, which must not consume the global
    # torch RNG, or a resumed run (whose loader starts at another moment) would diverge from an uninterrupted one
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )
    yield from loader
