"""``python -m insloc.transfer``: fine-tune a detector from InsLoc (or MoCo v2) weights on a COCO-format dataset and
report box and mask AP (spec insloc.md §5; the official detectron2 protocol, here with torchvision's Mask R-CNN
R50-FPN).

    torchrun --nproc_per_node=8 -m insloc.transfer --weights insloc_tv.pth --images /data/coco/train2017 \\
        --train /data/coco/annotations/instances_train2017.json --val-images /data/coco/val2017 \\
        --val /data/coco/annotations/instances_val2017.json --schedule 1x --out runs/transfer

Schedule (detectron2 Base-RCNN-FPN): 16 images per iteration, SGD 0.02 (linear in the batch), momentum 0.9, wd 1e-4
(none on BatchNorm, detectron2's ``WEIGHT_DECAY_NORM``),
linear warm-up over 1,000 iterations from 0.001 x, x0.1 at 60k and 80k of 90k (1x) or 120k and 160k of 180k (2x);
SyncBN under torchrun on GPUs. ``--weights``: ``python -m insloc.export --to torchvision`` output (none: from
scratch). Writes ``<out>/metrics.json`` (box AP, AP50, AP75, APs, APm, APl; ``mask_*`` the same for masks, Mask
R-CNN) and snapshots in ``<out>`` every
``--snapshot-every`` iterations (``--resume`` continues the newest; equal to an uninterrupted run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn

from common import checkpoint, dist
from common.checkpoint import read_weights
from common.cli import user_errors
from common.config import ConfigError
from common.dist import DeviceError
from common.logging import progress
from common.metrics.detection import coco_box_ap, coco_mask_ap
from common.threads import configure_threads
from insloc.data import item_seeded_torch
from insloc.detection import CocoDetection, build_detector, coco_detections, collate, load_pretrained

SCHEDULES = {"1x": (90000, (60000, 80000)), "2x": (180000, (120000, 160000))}


def learning_rate(base: float, step: int, steps: tuple[int, ...], warmup: int = 1000, factor: float = 0.001
                  ) -> float:
    """detectron2 ``WarmupMultiStepLR``: linear warm-up from ``factor`` x base, then x0.1 at each of ``steps``."""
    scale = 0.1 ** sum(step >= s for s in steps)
    if step < warmup:
        alpha = step / warmup
        scale *= factor * (1 - alpha) + alpha
    return base * scale


def parameter_groups(model: nn.Module, weight_decay: float = 1e-4) -> list[dict]:
    """detectron2's defaults: weight decay on weights and biases, none on normalisation layers
    (``WEIGHT_DECAY_NORM: 0.0``)."""
    norm, rest = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (norm if isinstance(module, nn.modules.batchnorm._NormBase) else rest).append(p)
    return [{"params": rest, "weight_decay": weight_decay}, {"params": norm, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model: nn.Module, data: CocoDetection, device: torch.device, batch: int = 2) -> dict[str, float]:
    """Box AP of ``model`` on ``data`` (pycocotools through ``common.metrics.detection``), and for Mask R-CNN mask AP
    (``mask_AP``, ``mask_AP50``, ...: the masks at 0.5 against the split's ``segmentation``)."""
    model.eval()
    results = []
    for start in range(0, len(data), batch):
        items = [data[i] for i in range(start, min(start + batch, len(data)))]
        outputs = model([image.to(device) for image, _ in items])
        results += coco_detections([{k: v.cpu() for k, v in o.items()} for o in outputs],
                                   [target["image_id"] for _, target in items], data.category_ids)
    model.train()
    metrics = coco_box_ap(data.coco.dataset, results)
    if results and "segmentation" in results[0]:
        metrics.update({f"mask_{k}": v for k, v in coco_mask_ap(data.coco.dataset, results).items()})
    return metrics


class Draws(torch.utils.data.Dataset):
    """Training draw ``d`` -> an image (uniform over the split) and its flip, both from (seed, d) alone: a resumed
    fine-tune sees the same images in the same order as an uninterrupted one, whatever the workers."""

    def __init__(self, data: CocoDetection, seed: int) -> None:
        self.data, self.seed = data, seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, draw: int) -> tuple[torch.Tensor, dict]:
        rng = np.random.default_rng([self.seed, draw])
        with item_seeded_torch(rng):  # CocoDetection's flip draws from torch's RNG
            return self.data[int(rng.integers(len(self.data)))]


class DrawSampler(torch.utils.data.Sampler):
    """This process's draws of iterations ``start`` .. ``iterations`` - 1 (``batch`` draws per iteration in all)."""

    def __init__(self, start: int, iterations: int, batch: int, rank: int, world: int) -> None:
        self.start, self.iterations, self.batch = start, iterations, batch
        self.per_rank = batch // world
        self.offset = rank * self.per_rank

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.iterations):
            yield from range(step * self.batch + self.offset, step * self.batch + self.offset + self.per_rank)

    def __len__(self) -> int:
        return (self.iterations - self.start) * self.per_rank


def fine_tune(model: nn.Module, data: CocoDetection, device: torch.device, iterations: int, steps: tuple[int, ...],
              batch: int, lr: float, workers: int = 4, warmup: int = 1000, seed: int = 0,
              run_dir: str | Path | None = None, snapshot_every: int = 5000, resume: bool = False) -> list[float]:
    """The detection loop; returns the loss per iteration run here. With ``run_dir``: snapshots (model, optimiser,
    step, RNG) every ``snapshot_every`` iterations and at the end; ``resume`` continues from the newest one, equal
    to an uninterrupted run."""
    world = dist.get_world_size()
    opt = torch.optim.SGD(parameter_groups(model), lr=lr, momentum=0.9)
    manager = checkpoint.CheckpointManager(run_dir) if run_dir is not None else None
    start = 0
    if resume and manager is not None and (path := manager.latest()) is not None:
        start, _ = checkpoint.restore(checkpoint.load_checkpoint(path, map_location=device), {"model": model},
                                      {"opt": opt}, source=str(path))
        dist.print0(f"resumed from {path} at iteration {start}")
    wrapped = dist.wrap_ddp(nn.SyncBatchNorm.convert_sync_batchnorm(model) if world > 1 and device.type == "cuda"
                            else model, device)
    sampler = DrawSampler(start, iterations, batch, dist.get_rank(), world)
    loader = torch.utils.data.DataLoader(Draws(data, seed), batch_size=batch // world, sampler=sampler,
                                         num_workers=workers, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    losses = []
    wrapped.train()
    for step, (images, targets) in enumerate(progress(loader, total=iterations - start, desc="transfer", unit="it"),
                                             start=start):
        for group in opt.param_groups:
            group["lr"] = learning_rate(lr, step, steps, warmup)
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        loss = sum(wrapped(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if manager is not None and ((step + 1) % snapshot_every == 0 or step + 1 == iterations):
            manager.save(checkpoint.capture(step + 1, {"model": model}, {"opt": opt}))
    return losses


@click.command()
@click.option("--weights", default=None, help="Exported torchvision weights (insloc.export --to torchvision).")
@click.option("--images", required=True, help="Training images folder.")
@click.option("--train", "train_ann", required=True, help="Training COCO instances JSON.")
@click.option("--val-images", required=True, help="Validation images folder.")
@click.option("--val", "val_ann", required=True, help="Validation COCO instances JSON.")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="1x", show_default=True)
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1), help="Images per iteration.")
@click.option("--boxes-only", is_flag=True, help="Faster R-CNN (no mask head).")
@click.option("--out", required=True, help="Output folder (metrics.json).")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default=None, help="cpu, cuda [auto].")
@click.option("--snapshot-every", default=5000, show_default=True, type=click.IntRange(min=1),
              help="Iterations between snapshots in --out.")
@click.option("--resume", is_flag=True, help="Continue from the newest snapshot in --out.")
@click.option("--iterations", default=None, type=click.IntRange(min=1),
              help="A shorter run: the schedule's steps scaled with it (2/3 and 8/9 of it for 1x) [the schedule's].")
def main(weights: str | None, images: str, train_ann: str, val_images: str, val_ann: str, schedule: str, batch: int,
         boxes_only: bool, out: str, workers: int, device: str | None, snapshot_every: int, resume: bool,
         iterations: int | None) -> None:
    """Fine-tune torchvision's Mask R-CNN R50-FPN from pretrained weights and report COCO box and mask AP."""
    configure_threads()
    try:
        dev = dist.init_distributed(device).device
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    with user_errors():
        if batch % dist.get_world_size():
            raise ConfigError(f"--batch {batch} is not divisible by the {dist.get_world_size()} processes")
        saved = checkpoint.CheckpointManager(out).latest()
        if saved is not None and not resume:
            raise ConfigError(f"{out} holds the snapshot {saved.name}: add --resume to continue it, or a new --out")
        if resume and saved is None:
            raise ConfigError(f"--resume: {out} holds no snapshot to continue")
        train = CocoDetection(images, train_ann, train=True, masks=not boxes_only)
        val = CocoDetection(val_images, val_ann, train=False, masks=False)
        model = build_detector(len(train.category_ids), masks=not boxes_only).to(dev)
        if weights:
            state = read_weights(weights)
            if isinstance(state, dict) and state.get("format") == checkpoint.FORMAT:
                raise ConfigError(f"{weights} is a training snapshot, not exported weights; convert it first: "
                                  f"python -m insloc.export --ckpt {weights} --to torchvision --out weights.pth")
            try:
                load_pretrained(model, state)
            except ValueError as err:
                raise ConfigError(f"{weights}: {err}") from None
        total, steps = SCHEDULES[schedule]
        if iterations is not None:
            steps = tuple(s * iterations // total for s in steps)
        fine_tune(model, train, dev, iterations or total, steps, batch, 0.02 * batch / 16, workers, run_dir=out,
                  snapshot_every=snapshot_every, resume=resume)
        if dist.is_main():  # one process scores the whole split; the others wait
            metrics = evaluate(model, val, dev)
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
            click.echo(json.dumps(metrics))
    dist.barrier()
    dist.cleanup()


if __name__ == "__main__":
    main()
