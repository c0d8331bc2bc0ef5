"""``torchrun --nproc_per_node=2 tests/common/shuffle_bn_worker.py OUT``: each rank saves its slices of a shuffle."""

from __future__ import annotations

import sys

import torch

from common import dist

if __name__ == "__main__":
    info = dist.init_distributed("cpu")
    torch.manual_seed(100 + info.rank)  # ranks draw different permutations; rank 0's must win (broadcast)
    x = torch.arange(4, dtype=torch.float32)[:, None] + 10 * info.rank  # rank r holds 10r + 0..3
    shuffled, idx_unshuffle = dist.batch_shuffle(x)
    restored = dist.batch_unshuffle(shuffled * 2, idx_unshuffle)
    torch.save({"shuffled": shuffled, "restored": restored, "idx": idx_unshuffle}, f"{sys.argv[1]}/rank{info.rank}.pt")
    dist.cleanup()
