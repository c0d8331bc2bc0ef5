"""InsLoc's (and the MoCo v2 baseline's) pretraining loop (spec insloc.md §2.5-§2.6):

    epoch-wise shuffled images (every process its slice, the last incomplete batch dropped)
    -> two views per image (composites with boxes, or MoCo crops) -> query forward, EMA of the key encoder, key
    forward with shuffle-BN, InfoNCE, enqueue (:class:`insloc.insloc.InsLoc`, :class:`insloc.moco.MoCoV2`)
    -> one SGD step (nesterov, wd 1e-4 on every parameter), the learning rate constant within an epoch and cosine
       over epochs to 0 (mmcv ``CosineAnealing``, by epoch), optional linear warm-up epochs.

Snapshots hold the model (both encoders, the queues and pointer), the optimiser, the step and the RNG; every draw of
an item depends only on (seed, epoch, index), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import checkpoint, dist
from common.config import ConfigError, to_dict
from common.data.dataset import ImageFiles
from common.logging import Progress, ScalarLogger
from insloc.composition import CompositionConfig
from insloc.config import InsLocConfig
from insloc.data import ArrayImages, CompositionPairs, ImageList, image_source
from insloc.insloc import InsLoc, PretextConfig
from insloc.moco import MoCoPairs, MoCoV2, moco_encoder
from insloc.model import InsLocC4, InsLocFPN
from insloc.synthetic import object_images


class EpochSampler(torch.utils.data.Sampler):
    """Items ``epoch x size + index`` for this process, from item ``start`` on, forever: each epoch a permutation
    drawn with (seed, epoch), cut to a multiple of the global batch, every process taking its stride."""

    def __init__(self, size: int, global_batch: int, rank: int, world: int, seed: int, start: int = 0) -> None:
        if size < global_batch:
            raise ConfigError(f"the dataset has {size} images, fewer than one global batch of {global_batch}")
        self.size, self.per_epoch = size, size // global_batch * global_batch // world
        self.rank, self.world, self.seed, self.start = rank, world, seed, start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            mine = order[: self.per_epoch * self.world][self.rank :: self.world]
            for index in mine[offset:].tolist():
                yield epoch * self.size + index
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # an endless stream; DataLoader only needs a number
        return 2**62


def learning_rate(cfg: InsLocConfig, epoch: int) -> float:
    """Linear warm-up over ``optim.warmup_epochs``, then cosine over the epochs to 0 (constant within an epoch)."""
    o, total = cfg.optim, cfg.train.epochs
    if epoch < o.warmup_epochs:
        return o.lr * (epoch + 1) / o.warmup_epochs
    return o.lr * 0.5 * (1 + math.cos(math.pi * (epoch - o.warmup_epochs) / max(total - o.warmup_epochs, 1)))


def build_model(cfg: InsLocConfig) -> nn.Module:
    m = cfg.model
    if cfg.method == "moco":
        encoder = moco_encoder(m.dim, m.block, tuple(m.layers), m.width, m.stem_pool)
        return MoCoV2(encoder, m.dim, m.queue_size, m.temperature, m.momentum)
    pretext = PretextConfig(m.queue_size, m.temperature, m.momentum, tuple(m.box_aug_levels), m.anchor_stride,
                            tuple(m.anchor_scales), tuple(m.anchor_ratios), m.shuffle_chunks)
    if m.neck == "c4":
        encoder: InsLocFPN | InsLocC4 = InsLocC4(m.roi_size, m.fc, m.dim, m.block, tuple(m.layers), m.width,
                                                 m.stem_pool)
    else:
        encoder = InsLocFPN(m.fpn_channels, m.roi_size, m.head_convs, m.fc, m.dim, m.block, tuple(m.layers),
                            m.width, m.stem_pool)
    return InsLoc(encoder, pretext, m.dim)


def build_dataset(cfg: InsLocConfig) -> torch.utils.data.Dataset:
    d = cfg.data
    if d.synthetic:
        images: ImageList | ImageFiles | ArrayImages = ArrayImages(
            object_images(d.synthetic_count, d.synthetic_size, cfg.seed)[0])
    elif not d.path:
        raise ConfigError("data.path is empty: give the image list (train.txt, with data.root) or an image folder")
    else:
        images = image_source(d.path, d.root)
    if cfg.method == "moco":
        return MoCoPairs(images, d.moco_size, cfg.seed, d.colour_strength)
    composition = CompositionConfig(d.base_scale, tuple(d.fore_scale), tuple(d.crop_scale), tuple(d.crop_ratio))
    return CompositionPairs(images, composition, cfg.seed, d.colour_strength)


@dataclass
class TrainedInsLoc:
    model: nn.Module
    step: int
    scalars: dict[str, float]


def train_insloc(cfg: InsLocConfig, run_dir: str | Path, device: torch.device | str = "cpu",
                 resume: str | Path | None = None, max_iterations: int | None = None) -> TrainedInsLoc:
    """Pretrain until ``train.epochs`` (or ``max_iterations`` more)."""
    device, run_dir = torch.device(device), Path(run_dir)
    world, rank = dist.get_world_size(), dist.get_rank()
    if cfg.train.batch % world:
        raise ConfigError(f"train.batch={cfg.train.batch} is not divisible by the {world} processes")
    if cfg.model.queue_size % cfg.train.batch:
        raise ConfigError(f"model.queue_size={cfg.model.queue_size} must be a multiple of train.batch="
                          f"{cfg.train.batch} (the official queue asserts it)")
    dataset = build_dataset(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    dist.seed_all(cfg.seed)
    model = build_model(cfg).to(device)
    per_rank = cfg.train.batch // world
    per_epoch = len(dataset) // cfg.train.batch
    total = per_epoch * cfg.train.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov,
                          weight_decay=cfg.optim.weight_decay)
    manager = checkpoint.CheckpointManager(run_dir, keep_last=cfg.train.keep_snapshots)
    step = 0
    if resume is not None:
        path = checkpoint.resolve_resume(resume)
        step, _ = checkpoint.restore(checkpoint.load_checkpoint(path, map_location=device), {"model": model},
                                     {"opt": opt}, source=str(path))
        dist.print0(f"resumed from {path} at iteration {step}")
    wrapped = dist.wrap_ddp(model, device, broadcast_buffers=False)  # the key encoder has no gradients: DDP skips it
    sampler = EpochSampler(len(dataset), cfg.train.batch, rank, world, cfg.seed, start=step * per_rank)
    # a private generator: the loader's base-seed draw must not shift the global RNG that a resume restores
    loader = iter(torch.utils.data.DataLoader(dataset, batch_size=per_rank, sampler=sampler,
                                              num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
                                              generator=torch.Generator().manual_seed(cfg.seed)))
    logger = ScalarLogger(run_dir) if dist.is_main() else None
    stop = total if max_iterations is None else min(total, step + max_iterations)
    scalars: dict[str, float] = {}
    with Progress(total, desc=cfg.method, unit="it", initial=step) as progress:
        while step < stop:
            batch = [t.to(device, non_blocking=True) for t in next(loader)]
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step // per_epoch)
            loss, scalars = wrapped(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            progress.update(1, loss=float(loss.detach()))
            if logger is not None and (step % cfg.train.log_every == 0 or step == stop):
                logger.log(step, lr=opt.param_groups[0]["lr"], epoch=step / per_epoch, **scalars)
            if step % cfg.train.snapshot_every == 0 or step == stop:
                manager.save(checkpoint.capture(step, {"model": model}, {"opt": opt}, config=to_dict(cfg)))
    if logger is not None:
        logger.close()
    return TrainedInsLoc(model, step, scalars)
