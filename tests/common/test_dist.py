from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from common import dist

TOY = Path(__file__).with_name("toy_train.py")
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(key, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collectives_are_exact_noops_in_one_process():
    t = torch.randn(3, 4)
    assert dist.get_world_size() == 1 and dist.get_rank() == 0 and dist.is_main()
    assert dist.all_reduce_mean(t) is t
    assert dist.all_reduce_sum(t) is t
    assert dist.all_gather_cat(t) is t
    assert dist.all_gather(t)[0] is t
    assert dist.broadcast_object({"a": 1}) == {"a": 1}


def test_single_process_env_gives_rank_zero_cpu(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    info = dist.init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.device.type) == (0, 1, 0, "cpu")


def test_slurm_env_is_translated_for_env_init(monkeypatch):
    monkeypatch.setattr(os, "environ", os.environ.copy())  # _launch_env writes RANK etc.; keep them out of later tests
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    os.environ.update(SLURM_PROCID="5", SLURM_NTASKS="8", SLURM_LOCALID="1", SLURM_JOB_NODELIST="gpu-node7")
    assert dist._launch_env() == (5, 8, 1)
    assert os.environ["RANK"] == "5" and os.environ["WORLD_SIZE"] == "8" and os.environ["LOCAL_RANK"] == "1"
    assert os.environ["MASTER_ADDR"] == "gpu-node7"


def test_seed_all_offsets_by_rank():
    dist.seed_all(3, rank=0)
    a = torch.rand(2)
    dist.seed_all(3, rank=1)
    b = torch.rand(2)
    dist.seed_all(3, rank=0)
    assert torch.equal(a, torch.rand(2)) and not torch.equal(a, b)


def test_ddp_two_processes_match_one_process_on_concatenated_batch(tmp_path):
    """torchrun --nproc_per_node=2 (gloo), 3 steps of batch 4 per rank == 1 process, batch 8 (tolerance 1e-6)."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(
        [sys.executable, str(TOY), "--outdir", str(single), "--steps", "3", "--batch", "8"],
        env=_env(),
        check=True,
        capture_output=True,
    )
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(TOY),
        "--outdir",
        str(ddp),
        "--steps",
        "3",
        "--batch",
        "4",
    ]
    result = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one = torch.load(single / "final.pt", weights_only=True)
    two = torch.load(ddp / "final.pt", weights_only=True)
    torch.manual_seed(0)  # the toy's initial weights: seed_all(0, rank=0) before building the model
    initial = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).state_dict()
    for key in one:
        assert (one[key] - initial[key]).abs().max() > 1e-3  # training moved the weights
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-6)
    assert result.stdout.count("step ") == 3  # rank-0-only printing
