"""Distributed helpers: one code path for a single process, torchrun, and SLURM's ``srun``.

Every collective here is an exact no-op in a single process (no process group is needed), so paper code can call
``all_gather_cat`` unconditionally; the official InsGen crashes on one GPU for lack of this (its issues #2/#5).
"""

from __future__ import annotations

import builtins
import os
import random
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _slurm_master_addr() -> str:
    """First host of the SLURM allocation (``scontrol show hostnames`` expands ``node[01-04]`` lists)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "127.0.0.1")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodelist.split(",")[0].split("[")[0]


def _launch_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's env, else SLURM's, else a single process.

    Under SLURM the torchrun-style variables are filled in so ``init_process_group('env://')`` works.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if "SLURM_PROCID" in os.environ and _env_int("SLURM_NTASKS", 1) > 1:
        rank, world, local = _env_int("SLURM_PROCID", 0), _env_int("SLURM_NTASKS", 1), _env_int("SLURM_LOCALID", 0)
        os.environ.setdefault("MASTER_ADDR", _slurm_master_addr())
        os.environ.setdefault("MASTER_PORT", str(DEFAULT_MASTER_PORT))
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
        return rank, world, local
    return 0, 1, 0


class DeviceError(ValueError):
    """A ``--device`` that is no device or is not available here (the CLIs show it as one usage line)."""


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """``None``/'auto' -> this rank's GPU if CUDA is available, else CPU; 'cuda' -> ``cuda:<local_rank>``."""
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if resolved.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {device!r}: only cpu and cuda devices are supported; use cpu, cuda or cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device} was asked for but CUDA is not available; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    return resolved


def init_distributed(device: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun or srun (NCCL on CUDA, gloo on CPU).

    A single process gets no process group; all helpers below then act as no-ops.
    """
    rank, world_size, local_rank = _launch_env()
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", init_method="env://")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def get_rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def print0(*args: object, **kwargs: object) -> None:
    """``print`` on rank 0 only."""
    if is_main():
        builtins.print(*args, **kwargs)


def seed_all(seed: int, rank: int | None = None) -> int:
    """Seed python, numpy and torch (all devices) with ``seed * world_size + rank``, as StyleGAN2-ADA seeds ranks.

    Returns the seed used by this rank.
    """
    rank = get_rank() if rank is None else rank
    rank_seed = seed * get_world_size() + rank
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)
    torch.manual_seed(rank_seed)
    return rank_seed


def wrap_ddp(module: nn.Module, device: torch.device, **kwargs: object) -> nn.Module:
    """``DistributedDataParallel`` around ``module`` when distributed, else ``module`` itself."""
    if not is_distributed():
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **kwargs)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over ranks (a new tensor); ``tensor`` itself in a single process."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
    return out / get_world_size()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum of ``tensor`` over ranks (a new tensor); ``tensor`` itself in a single process."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
    return out


def all_gather(tensor: Tensor) -> list[Tensor]:
    """Every rank's ``tensor`` (same shape on all ranks), in rank order; ``[tensor]`` in a single process.

    No gradient flows through the gathered copies (as MoCo's ``concat_all_gather``).
    """
    if not is_distributed():
        return [tensor]
    gathered = [torch.empty_like(tensor) for _ in range(get_world_size())]
    torch_dist.all_gather(gathered, tensor.detach().contiguous())
    return gathered


def all_gather_cat(tensor: Tensor, dim: int = 0) -> Tensor:
    """Concatenation of every rank's ``tensor`` along ``dim``; ``tensor`` itself in a single process."""
    if not is_distributed():
        return tensor
    return torch.cat(all_gather(tensor), dim=dim)


@torch.no_grad()
def batch_shuffle(x: Tensor) -> tuple[Tensor, Tensor]:
    """Shuffle-BN, step 1 (MoCo ``_batch_shuffle_ddp``): gather every rank's batch, permute the global batch with
    rank 0's ``randperm`` and hand each rank its slice; returns ``(this rank's shuffled slice, idx_unshuffle)``.

    Key encoders with BatchNorm then normalise over a mix of every rank's samples, so the batch statistics cannot
    leak which key belongs to which query. In one process the batch is returned as it is with an identity index:
    one BatchNorm over the whole batch sees the same statistics in any order (genforce/insgen does the same).
    """
    if not is_distributed():
        return x, torch.arange(len(x), device=x.device)
    gathered = all_gather_cat(x)
    idx_shuffle = torch.randperm(len(gathered), device=x.device)
    torch_dist.broadcast(idx_shuffle, src=0)
    idx_this = idx_shuffle.view(get_world_size(), -1)[get_rank()]
    return gathered[idx_this], torch.argsort(idx_shuffle)


@torch.no_grad()
def batch_unshuffle(x: Tensor, idx_unshuffle: Tensor) -> Tensor:
    """Shuffle-BN, step 2 (MoCo ``_batch_unshuffle_ddp``): this rank's outputs back in its original sample order."""
    if not is_distributed():
        return x[idx_unshuffle]
    gathered = all_gather_cat(x)
    return gathered[idx_unshuffle.view(get_world_size(), -1)[get_rank()]]


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (no-op in a single process)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch_dist.broadcast(tensor.data, src=src)


def all_reduce_grads(params: list[Tensor]) -> None:
    """Average the ``.grad`` of ``params`` over ranks in place, with one flattened all_reduce.

    A parameter without a gradient on this rank counts as a zero gradient (and gets one), so every rank sends the
    same buffer layout. No-op in a single process.
    """
    if not is_distributed() or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
    flat /= get_world_size()
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank (e.g. the run directory rank 0 created)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Destroy the process group if one was created."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def torchrun_command(module: str, args: list[str], gpus: int) -> list[str]:
    """The argv that runs ``python -m module args`` on ``gpus`` local processes through torchrun."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={gpus}",
        "-m",
        module,
        *args,
    ]
