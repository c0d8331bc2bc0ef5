"""A few GH-Feat iterations under torchrun; every rank saves its E and D states.

    python -m torch.distributed.run --nproc_per_node=2 tests/ghfeat/ddp_ghfeat_train.py --outdir D --source S.pt

Writes ``D/rank{R}.pt`` = {"E": state dict, "D": state dict, "step": iterations} of each rank's own modules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import dist
from common.config import load_config
from common.threads import configure_threads
from ghfeat.config import GHFeatConfig, config_path
from ghfeat.training import train_ghfeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    configure_threads(1)
    dist.init_distributed("cpu")
    cfg = load_config(GHFeatConfig, config_path("tiny"), [f"generator.path={args.source}", "data.num_images=64",
                                                           "train.batch=4", "train.total_kimg=0.012",
                                                           "data.workers=0"])
    out = Path(args.outdir)
    result = train_ghfeat(cfg, out / "run")
    torch.save({"E": result.E.state_dict(), "D": result.D.state_dict(), "step": result.step},
               out / f"rank{dist.get_rank()}.pt")
    dist.cleanup()


if __name__ == "__main__":
    main()
