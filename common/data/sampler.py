"""An endless, seeded, resumable index stream for training, sharded over DDP ranks.

The stream is the one of the official ``torch_utils/misc.py: InfiniteSampler`` (stylegan2_base.md §4): the indices
0..size-1 are shuffled once with ``np.random.RandomState(seed)``; the stream then walks the order cyclically, and
after emitting position ``i`` swaps it with the position ``(i - r) % size``, ``r`` drawn uniformly from
``[0, window)`` by the same RandomState, ``window = rint(size * window_size)`` (no swaps when ``window < 2`` or
without shuffling). Later passes are thus gradually re-shuffled rather than repeated.

Rank ``r`` of ``W`` takes the global positions ``r, r + W, r + 2W, ...`` (as the official sampler does), so the
ranks' k-th batches of ``B`` together are exactly the k-th batch of ``W * B`` of a single process. ``start`` is the
number of items this rank has already consumed: the rank's stream then begins at global position
``start * W + rank``, which makes a resumed run continue the very same indices. Skipping replays the swaps
(~0.4 us per skipped global position on one CPU core, i.e. seconds for tens of millions of images).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

_DRAW_BLOCK = 4096  # random offsets drawn per RandomState call; block and one-by-one draws give the same numbers


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless dataset indices (Python ints) for one rank; see the module docstring for the exact stream."""

    def __init__(
        self,
        size: int,
        rank: int = 0,
        num_replicas: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        window_size: float = 0.5,
        start: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError(f"InfiniteSampler needs at least one item, got size={size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={num_replicas}), got {rank}")
        if not 0 <= window_size <= 1:
            raise ValueError(f"window_size must lie in [0, 1], got {window_size}")
        if start < 0:
            raise ValueError(f"start (items already consumed by this rank) must be >= 0, got {start}")
        super().__init__()
        self.size = size
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start = start

    def __iter__(self) -> Iterator[int]:
        first = self.start * self.num_replicas + self.rank
        return itertools.islice(self._global_stream(), first, None, self.num_replicas)

    def _global_stream(self) -> Iterator[int]:
        """The index stream shared by all ranks, position 0 onwards."""
        order = np.arange(self.size)
        window = 0
        rng = np.random.RandomState(self.seed)
        if self.shuffle:
            rng.shuffle(order)
            window = int(np.rint(self.size * self.window_size))
        items = order.tolist()  # list swaps are ~10x faster than numpy element swaps
        pos = 0
        while True:
            if window < 2:
                yield items[pos]
                pos = (pos + 1) % self.size
                continue
            for offset in rng.randint(window, size=_DRAW_BLOCK).tolist():
                yield items[pos]
                other = (pos - offset) % self.size
                items[pos], items[other] = items[other], items[pos]
                pos = (pos + 1) % self.size
