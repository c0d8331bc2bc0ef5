"""A few iterations of the shared StyleGAN2 loop under torchrun; every rank saves all its module states.

    python -m torch.distributed.run --nproc_per_node=2 tests/common/ddp_gan_train.py --outdir D [--insgen | --toy]

Writes ``D/rank{R}.pt`` = {module name: state_dict}. Tests call :func:`launch` and :func:`rank_states`.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from common import dist
from common.config import load_config
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.training import Method, replace_cfg, train
from common.threads import configure_threads

SMALL = dict(
    data={"source": "digits", "resolution": 8},
    G={"channel_base": 64, "channel_max": 8, "z_dim": 8, "w_dim": 8},
    D={"channel_base": 64, "channel_max": 8, "mbstd_group_size": 2},
    optim={"g_reg_interval": 2, "d_reg_interval": 2},
    train={"batch": 8, "batch_gpu": 2, "total_kimg": 1, "kimg_per_tick": 1, "metrics": ["none"]},
    probe={"every": 0},
)


def launch(outdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run this script on 2 local processes (gloo) on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={port}", __file__, "--outdir", str(outdir), *extra,
    ]
    env = {**os.environ, "GENFORCE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def rank_states(outdir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Rank 0's states after asserting that every parameter and buffer equals rank 1's, except G's w_avg
    (not synchronised, as the official ``broadcast_buffers=False``)."""
    rank0 = torch.load(outdir / "rank0.pt", weights_only=True)
    rank1 = torch.load(outdir / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        for key, value in rank0[name].items():
            if not key.endswith("w_avg"):
                assert torch.equal(value, rank1[name][key]), f"{name}.{key} differs between ranks"
    return rank0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--insgen", action="store_true", help="train InsGen (tests/insgen) instead of plain ADA")
    parser.add_argument("--toy", action="store_true", help="train the toy method (frozen G base, masked D)")
    parser.add_argument("--probe", action="store_true", help="probe D's over-fitting every 2 iterations")
    args = parser.parse_args()
    configure_threads(1)
    dist.init_distributed("cpu")
    if args.insgen:
        from insgen.config import InsGenConfig, config_path
        from insgen.method import InsGen

        cfg = load_config(InsGenConfig, config_path("tiny"))
        cfg = replace_cfg(cfg, **SMALL, insgen={"real_queue_size": 32, "fake_queue_size": 32})
        method = InsGen()
    else:
        cfg = replace_cfg(load_config(StyleGAN2Config, preset_path("tiny")), **SMALL)
        method = Method()
        if args.toy:
            from toy_method import ToyMethod

            method = ToyMethod()
    if args.probe:
        cfg = replace_cfg(cfg, data={"subset": 64, "subset_seed": 0}, probe={"every": 2, "num_fakes": 64})
    out = Path(args.outdir)
    state = train(cfg, out / "run", method=method, device="cpu", max_iterations=args.iterations)
    states = {name: module.state_dict() for name, module in state.modules.items()}
    torch.save(states, out / f"rank{dist.get_rank()}.pt")
    dist.cleanup()


if __name__ == "__main__":
    main()
