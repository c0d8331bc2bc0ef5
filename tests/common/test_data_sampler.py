"""InfiniteSampler / infinite_loader: the official index stream, DDP sharding equivalence, and exact resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from common.data import ImageDataset, InfiniteSampler, infinite_loader, write_image_archive


def _official_stream(size: int, seed: int, window_size: float, shuffle: bool, count: int) -> list[int]:
    """torch_utils/misc.py InfiniteSampler for one replica, one RandomState draw per step, as stylegan2_base.md §4."""
    order = np.arange(size)
    rnd = np.random.RandomState(seed)
    window = 0
    if shuffle:
        rnd.shuffle(order)
        window = int(np.rint(size * window_size))
    out = []
    for step in range(count):
        i = step % size
        out.append(int(order[i]))
        if window >= 2:
            j = (i - rnd.randint(window)) % size
            order[i], order[j] = order[j], order[i]
    return out


def _take(sampler: InfiniteSampler, count: int) -> list[int]:
    return list(itertools.islice(iter(sampler), count))


@pytest.mark.parametrize(
    ("size", "seed", "window_size", "shuffle"),
    [(10, 0, 0.5, True), (37, 5, 0.3, True), (9000, 1, 0.5, True), (3, 2, 0.5, True), (10, 0, 0.5, False)],
)
def test_stream_matches_official_sampler(size, seed, window_size, shuffle):
    count = max(3 * size, 10_000)  # crosses the sampler's 4096-draw blocks
    expected = _official_stream(size, seed, window_size, shuffle, count)
    assert _take(InfiniteSampler(size, seed=seed, window_size=window_size, shuffle=shuffle), count) == expected


def test_pinned_prefix():
    # values printed by the official misc.InfiniteSampler loop (RandomState(0), window rint(6 * 0.5) = 3)
    assert _take(InfiniteSampler(6, seed=0), 12) == _official_stream(6, 0, 0.5, True, 12)
    assert _take(InfiniteSampler(6, seed=0), 12) == [5, 2, 1, 3, 0, 2, 4, 3, 1, 5, 0, 3]


@pytest.mark.parametrize("world", [2, 3])
def test_rank_batches_together_equal_the_single_process_batch(world):
    size, batch, steps = 23, 4, 12
    single = iter(InfiniteSampler(size, seed=3))
    ranks = [iter(InfiniteSampler(size, rank=r, num_replicas=world, seed=3)) for r in range(world)]
    for _ in range(steps):
        big = [next(single) for _ in range(world * batch)]
        per_rank = [[next(it) for _ in range(batch)] for it in ranks]
        for r in range(world):
            assert per_rank[r] == big[r::world]  # rank r takes global positions r, r + W, ...
        assert sorted(sum(per_rank, [])) == sorted(big)


@pytest.mark.parametrize(("world", "rank"), [(1, 0), (2, 1), (4, 2)])
def test_start_continues_the_same_stream(world, rank):
    full = _take(InfiniteSampler(50, rank=rank, num_replicas=world, seed=9), 6000)
    for start in (0, 1, 37, 5000):
        resumed = InfiniteSampler(50, rank=rank, num_replicas=world, seed=9, start=start)
        assert _take(resumed, 1000) == full[start : start + 1000]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="at least one item"):
        InfiniteSampler(0)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, num_replicas=2\), got 2"):
        InfiniteSampler(5, rank=2, num_replicas=2)
    with pytest.raises(ValueError, match="window_size must lie in"):
        InfiniteSampler(5, window_size=1.5)
    with pytest.raises(ValueError, match="start .* must be >= 0"):
        InfiniteSampler(5, start=-1)


def test_loader_resume_and_ddp_sharding(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(13, 4, 4, 3), dtype=np.uint8)
    ds = ImageDataset(write_image_archive(tmp_path / "d.zip", images, list(range(13))), use_labels=True)
    fresh = infinite_loader(ds, batch_size=3, seed=1)
    batches = [next(fresh) for _ in range(8)]
    x, c = batches[0]
    assert (x.dtype, x.shape, c.dtype, c.shape) == (torch.uint8, (3, 3, 4, 4), torch.float32, (3, 13))
    resumed = infinite_loader(ds, batch_size=3, seed=1, start=5 * 3)
    for k in range(5, 8):
        xr, cr = next(resumed)
        assert torch.equal(xr, batches[k][0]) and torch.equal(cr, batches[k][1])

    single = infinite_loader(ds, batch_size=4, seed=2)
    shards = [infinite_loader(ds, batch_size=2, rank=r, world_size=2, seed=2) for r in range(2)]
    for _ in range(5):
        x, c = next(single)
        (x0, c0), (x1, c1) = next(shards[0]), next(shards[1])
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(c[0::2], c0) and torch.equal(c[1::2], c1)
