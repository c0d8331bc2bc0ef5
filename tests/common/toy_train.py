"""A small regression run on the common building blocks, launched as a subprocess by the DDP and resume tests.

    python tests/common/toy_train.py --outdir D --steps 30 --batch 8 [--snap-every 10] [--resume] [--noise]
    python -m torch.distributed.run --nproc_per_node=2 tests/common/toy_train.py --outdir D --batch 4 ...

``--batch`` is per process. Writes ``D/final.pt`` (model state) on rank 0 and prints ``step N`` after each step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from common import checkpoint, dist
from common.data.sampler import InfiniteSampler
from common.threads import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--snap-every", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--noise", action="store_true", help="add torch-RNG input noise (exercises RNG resume)")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()

    configure_threads(1)
    info = dist.init_distributed("cpu")
    dist.seed_all(0, rank=0)  # identical initial weights on every rank and in the single-process run
    data_gen = torch.Generator().manual_seed(1234)
    inputs = torch.randn(256, 8, generator=data_gen)
    targets = torch.sin(inputs.sum(dim=1, keepdim=True))
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ddp_model = dist.wrap_ddp(model, info.device)
    dist.seed_all(1)  # per-rank streams from here on

    manager = checkpoint.CheckpointManager(args.outdir, keep_last=2)
    step = 0
    if args.resume and manager.latest() is not None:
        ckpt = checkpoint.load_checkpoint(manager.latest())
        step, _ = checkpoint.restore(ckpt, {"model": model}, {"optimizer": optimizer})
    sampler = InfiniteSampler(
        len(inputs), rank=info.rank, num_replicas=info.world_size, seed=0, start=step * args.batch
    )
    indices = iter(sampler)
    while step < args.steps:
        batch = torch.tensor([next(indices) for _ in range(args.batch)])
        x = inputs[batch]
        if args.noise:
            x = x + 0.1 * torch.randn_like(x)
        loss = (ddp_model(x) - targets[batch]).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if args.snap_every and step % args.snap_every == 0:
            manager.save(checkpoint.capture(step, {"model": model}, {"optimizer": optimizer}))
        dist.print0(f"step {step}", flush=True)
        time.sleep(args.sleep)
    if info.is_main:
        checkpoint.atomic_save(model.state_dict(), f"{args.outdir}/final.pt")
    dist.cleanup()


if __name__ == "__main__":
    main()
