"""``python -m insloc.transfer``: fine-tune a detector from InsLoc (or MoCo v2) weights on a COCO-format dataset and
report box AP (spec insloc.md §5; the official detectron2 protocol, here with torchvision's Mask R-CNN R50-FPN).

    torchrun --nproc_per_node=8 -m insloc.transfer --weights insloc_tv.pth --images /data/coco/train2017 \\
        --train /data/coco/annotations/instances_train2017.json --val-images /data/coco/val2017 \\
        --val /data/coco/annotations/instances_val2017.json --schedule 1x --out runs/transfer

Schedule (detectron2 Base-RCNN-FPN): 16 images per iteration, SGD 0.02 (linear in the batch), momentum 0.9, wd 1e-4
(none on BatchNorm, detectron2's ``WEIGHT_DECAY_NORM``),
linear warm-up over 1,000 iterations from 0.001 x, x0.1 at 60k and 80k of 90k (1x) or 120k and 160k of 180k (2x);
SyncBN under torchrun on GPUs. ``--weights``: ``python -m insloc.export --to torchvision`` output (none: from
scratch). Writes ``<out>/metrics.json`` (box AP, AP50, AP75, APs, APm, APl).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from torch import nn

from common import dist
from common.checkpoint import read_weights
from common.cli import user_errors
from common.config import ConfigError
from common.logging import progress
from common.metrics.detection import coco_box_ap
from common.threads import configure_threads
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
    """Box AP of ``model`` on ``data`` (pycocotools through ``common.metrics.detection``)."""
    model.eval()
    results = []
    for start in range(0, len(data), batch):
        items = [data[i] for i in range(start, min(start + batch, len(data)))]
        outputs = model([image.to(device) for image, _ in items])
        results += coco_detections([{k: v.cpu() for k, v in o.items()} for o in outputs],
                                   [target["image_id"] for _, target in items], data.category_ids)
    model.train()
    return coco_box_ap(data.coco.dataset, results)


def fine_tune(model: nn.Module, data: CocoDetection, device: torch.device, iterations: int, steps: tuple[int, ...],
              batch: int, lr: float, workers: int = 4, warmup: int = 1000, seed: int = 0) -> list[float]:
    """The detection loop; returns the loss per iteration."""
    world = dist.get_world_size()
    model = dist.wrap_ddp(nn.SyncBatchNorm.convert_sync_batchnorm(model) if world > 1 and device.type == "cuda"
                          else model, device)
    opt = torch.optim.SGD(parameter_groups(model), lr=lr, momentum=0.9)
    sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=iterations * batch // world,
                                             generator=torch.Generator().manual_seed(seed + dist.get_rank()))
    loader = torch.utils.data.DataLoader(data, batch_size=batch // world, sampler=sampler, num_workers=workers,
                                         collate_fn=collate, generator=torch.Generator().manual_seed(seed))
    losses = []
    model.train()
    for step, (images, targets) in enumerate(progress(loader, total=iterations, desc="transfer", unit="it")):
        for group in opt.param_groups:
            group["lr"] = learning_rate(lr, step, steps, warmup)
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
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
def main(weights: str | None, images: str, train_ann: str, val_images: str, val_ann: str, schedule: str, batch: int,
         boxes_only: bool, out: str, workers: int, device: str | None) -> None:
    """Fine-tune torchvision's Mask R-CNN R50-FPN from pretrained weights and report COCO box AP."""
    configure_threads()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with user_errors():
        train = CocoDetection(images, train_ann, train=True, masks=not boxes_only)
        val = CocoDetection(val_images, val_ann, train=False, masks=False)
        model = build_detector(len(train.category_ids), masks=not boxes_only).to(dev)
        if weights:
            try:
                load_pretrained(model, read_weights(weights))
            except ValueError as err:
                raise ConfigError(f"{weights}: {err}") from None
        iterations, steps = SCHEDULES[schedule]
        fine_tune(model, train, dev, iterations, steps, batch, 0.02 * batch / 16, workers)
        metrics = evaluate(dist.unwrap(model), val, dev)
    if dist.is_main():
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
        click.echo(json.dumps(metrics))


if __name__ == "__main__":
    main()
