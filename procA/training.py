"""The explicit training loop of the three ProCA training stages (spec §2.1, §2.5).

- ``source_only`` (stage 1): ``CE + lambda_lov * Lovász`` on labelled source batches.
- ``proca`` (stage 3): the same supervised loss plus the prototype contrast on source (ground truth at the feature
  grid) and target (on-the-fly confident pseudo-labels) at feature and output level. Source and target go through
  the network in separate forward passes (per-domain BN statistics, as the official code). Per iteration the
  prototypes are updated with target then source pixels, and the loss uses the updated prototypes.
- ``self_training`` (stage 5): CE on offline target pseudo-labels, from ImageNet weights (official script).

Stages 1 and 3 draw the source from the official class-balanced list (``data.class_balanced``, procA/label_info.py)
of ``max_iters x`` the official SOLVER.BATCH_SIZE draws, walked in shuffled order by the shared sampler.

Model selection: every ``eval_every`` iterations (and at the end) the single-scale target val mIoU is logged
(``val/mIoU``) beside the best so far (``val/best_mIoU``). The final weights are ``model.pt`` (the default model
of every later stage and evaluation); the best-on-validation weights are ``model_best.pt`` (the official
``model_best.pth``, chosen on Cityscapes val itself: a protocol issue, spec §7.5; ``--select best`` of procA.eval
and procA.pipeline evaluates them for comparison with the paper). Snapshots carry the best metric and weights, so
a resumed stage writes the same ``model_best.pt`` as an uninterrupted one.

Optimisation: SGD for the backbone and SGD with ``head_lr_mult`` x the LR for the classifier, poly decay
``lr (1 - it / max_iters) ** lr_power``, stopped after ``iters``. Gradients are averaged over ranks with
:func:`common.dist.all_reduce_grads` (DDP's reducer does not allow the two forward passes of one ProCA step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import dist
from common.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_save,
    capture,
    load_checkpoint,
    load_module_state,
    read_weights,
    resolve_resume,
    restore,
    saved_module,
)
from common.config import ConfigError, to_dict
from common.data import infinite_loader
from common.logging import Progress, ScalarLogger
from common.metrics.segmentation import segmentation_scores
from procA.config import ProCAConfig, StageConfig
from procA.contrast import PrototypeEstimator, confident_pseudo_labels, labels_at, pixels, prototype_contrast_loss
from procA.data import SegmentationTransform, build_dataset, with_pseudo_labels
from procA.evaluate import evaluate
from procA.label_info import class_balanced_source
from procA.lovasz import lovasz_softmax
from procA.model import DeepLabV2, load_imagenet_weights, parameter_groups

Stage = Literal["source_only", "proca", "self_training"]
MODEL_FILE = "model.pt"
BEST_MODEL_FILE = "model_best.pt"
PROTOTYPES_FILE = "prototypes.pt"


def build_model(cfg: ProCAConfig, init: str, device: torch.device) -> DeepLabV2:
    """DeepLab-v2 from a procA model file ``init``, else ImageNet weights if configured, else random."""
    m = cfg.model
    model = DeepLabV2(m.num_classes, m.blocks, m.base_width, m.dilate, m.aspp_rates, m.freeze_bn)
    if init:
        load_module_state(model, saved_module(load_checkpoint(init), "model", init), "model", source=init)
    elif m.imagenet_weights:
        load_imagenet_weights(model.backbone, m.imagenet_weights)
    model = model.to(device)
    if m.sync_bn and not m.freeze_bn and dist.is_distributed() and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def save_model(model: nn.Module, path: Path, step: int, cfg: ProCAConfig, weights: dict[str, Tensor] | None = None,
               extra: dict[str, object] | None = None) -> Path:
    """A weights-only model file (the format of every stage's ``model.pt``); ``weights`` replace the model's own."""
    state = capture(step, {"model": model}, extra=extra, config=to_dict(cfg))
    if weights is not None:
        state["modules"]["model"] = weights
    return atomic_save(state, path) if dist.is_main() else path


def poly_lr(base_lr: float, it: int, max_iters: int, power: float) -> float:
    """Official ``adjust_learning_rate`` (poly): ``base_lr * (1 - it / max_iters) ** power``."""
    return base_lr * (1.0 - it / max_iters) ** power


def supervised_loss(logits: Tensor, labels: Tensor, lambda_lov: float) -> Tensor:
    """``CE(up(logits), y) + lambda_lov * LovaszSoftmax(softmax(up(logits)), y)``; up = bilinear, align_corners."""
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True)
    loss = F.cross_entropy(up, labels, ignore_index=255)
    if lambda_lov > 0:
        loss = loss + lambda_lov * lovasz_softmax(up.softmax(dim=1), labels)
    return loss


def proca_losses(
    model: nn.Module, source: tuple[Tensor, Tensor], target_images: Tensor, cfg: ProCAConfig,
    feat_protos: PrototypeEstimator, out_protos: PrototypeEstimator,
) -> dict[str, Tensor]:
    """One ProCA iteration's losses (spec §2.2): ``L_sup + lambda_feat L_feat + lambda_out L_out``."""
    c = cfg.contrast
    images, labels = source
    feat_s, logits_s = model(images)
    feat_t, logits_t = model(target_images)
    sup = supervised_loss(logits_s, labels, cfg.proca.lambda_lov)
    y_s = labels_at(labels, tuple(feat_s.shape[-2:])).reshape(-1)
    y_t = confident_pseudo_labels(logits_t.detach(), c.delta, c.target_mask_on).reshape(-1)
    levels = [("feat", feat_protos, feat_s, feat_t, c.lambda_feat)]
    if c.multi_level:
        levels.append(("out", out_protos, logits_s, logits_t, c.lambda_out))
    losses = {"sup": sup}
    total = sup
    for name, estimator, source_maps, target_maps, weight in levels:
        estimator.update(pixels(target_maps), y_t)
        estimator.update(pixels(source_maps), y_s)
        loss = prototype_contrast_loss(pixels(source_maps), y_s, estimator.proto, c.tau) + prototype_contrast_loss(
            pixels(target_maps), y_t, estimator.proto, c.tau
        )
        losses[name] = loss
        total = total + weight * loss
    losses["target_kept"] = (y_t != 255).float().mean()
    losses["total"] = total
    return losses


def load_prototypes(cfg: ProCAConfig, feature_dim: int, device: torch.device) -> tuple[PrototypeEstimator, ...]:
    """The stage-2 prototypes (feature level, output level) named by ``contrast.prototypes``."""
    c, k = cfg.contrast, cfg.model.num_classes
    estimators = (
        PrototypeEstimator(k, feature_dim, c.proto_update, c.ema_momentum, device),
        PrototypeEstimator(k, k, c.proto_update, c.ema_momentum, device),
    )
    if not c.prototypes:
        raise ConfigError("the ProCA stage needs contrast.prototypes (the prototypes.pt of procA.init_prototypes)")
    if not Path(c.prototypes).is_file():
        raise CheckpointError(f"contrast.prototypes: no file at {c.prototypes}; run python -m procA.init_prototypes")
    saved = read_weights(c.prototypes, map_location=device)
    try:
        estimators[0].load_state_dict(saved["feat"])
        estimators[1].load_state_dict(saved["out"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{c.prototypes} does not fit this model ({err})") from None
    return estimators


def _batches(dataset: torch.utils.data.Dataset, batch_size: int, seed: int, start_iter: int,
             num_workers: int) -> Iterator[tuple[Tensor, Tensor]]:
    world = dist.get_world_size()
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {world} processes; change either")
    per_rank = batch_size // world
    return infinite_loader(dataset, per_rank, dist.get_rank(), world, seed, start_iter * per_rank, num_workers)


def val_batches(cfg: ProCAConfig, batch_size: int = 1) -> torch.utils.data.DataLoader:
    """Target val set, sharded over ranks (rank r takes items r, r + W, ...)."""
    data = build_dataset(cfg.data, "target_val", cfg.model.num_classes, seed=cfg.seed)
    shard = torch.utils.data.Subset(data, range(dist.get_rank(), len(data), dist.get_world_size()))
    return torch.utils.data.DataLoader(
        shard, batch_size=batch_size, num_workers=min(cfg.data.num_workers, 2), generator=torch.Generator()
    )


def balanced_draws(cfg: ProCAConfig, stage: Stage) -> int:
    """``max_iters`` of the official source dataset: SOLVER.MAX_ITER x SOLVER.BATCH_SIZE (core/datasets/build.py).

    SOLVER.BATCH_SIZE is the source batch of train_src.py (8) but counts source AND target images in
    train_proca.py (8 = 4 + 4, each domain gets BATCH_SIZE // 2), hence 2 x ``batch_size`` for the ProCA stage.
    """
    s: StageConfig = getattr(cfg, stage)
    return s.max_iters * s.batch_size * (2 if stage == "proca" else 1)


def _source(cfg: ProCAConfig, stage: Stage, augment: str) -> torch.utils.data.Dataset:
    """The stage's source set, re-indexed by the official class-balanced list if ``data.class_balanced``."""
    k = cfg.model.num_classes
    data = build_dataset(cfg.data, "source", k, augment, cfg.seed)
    if cfg.data.class_balanced:  # official seed: np.random.seed(0) at import of core/datasets/transform.py
        data = class_balanced_source(cfg.data, data, k, balanced_draws(cfg, stage), seed=0)
    return data


def _stage_data(cfg: ProCAConfig, stage: Stage, start: int) -> tuple[Iterator, Iterator | None]:
    s: StageConfig = getattr(cfg, stage)
    k, seed, workers = cfg.model.num_classes, cfg.seed, cfg.data.num_workers
    if stage == "source_only":
        return _batches(_source(cfg, stage, "none"), s.batch_size, seed, start, workers), None
    if stage == "proca":
        source = _source(cfg, stage, "photometric" if s.strong_aug else "none")
        target = build_dataset(cfg.data, "target_train", k, seed=seed)
        return (_batches(source, s.batch_size, seed, start, workers),
                _batches(target, s.batch_size, seed + 1, start, workers))
    if not cfg.pseudo_label.labels_dir:
        raise ConfigError("self-training needs pseudo_label.labels_dir (the pseudo_labels/ of procA.pseudo_label)")
    images = build_dataset(cfg.data, "target_train", k, seed=seed)
    transform = SegmentationTransform(tuple(cfg.data.target_size), "scale_crop" if s.strong_aug else "none")
    labelled = with_pseudo_labels(images, cfg.pseudo_label.labels_dir, transform, k)
    return _batches(labelled, s.batch_size, seed, start, workers), None


def val_miou(model: nn.Module, val: Iterable[tuple[Tensor, Tensor]], cfg: ProCAConfig, device: torch.device) -> float:
    """Single-scale target val mIoU in percent (the official training-time ``run_test``)."""
    return 100 * segmentation_scores(evaluate(model, val, cfg.model.num_classes, device).hist)["mIoU"]


def _cpu_weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in dist.unwrap(model).state_dict().items()}


def check_stage(s: StageConfig, stage: Stage) -> None:
    """One ``ConfigError`` line for stage values the loop cannot run with (instead of a traceback mid-way)."""
    for key in ("iters", "max_iters", "batch_size", "eval_every", "snapshot_every"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{stage}.{key}={getattr(s, key)} must be >= 1")
    if s.iters > s.max_iters:
        raise ConfigError(f"{stage}.iters={s.iters} exceeds {stage}.max_iters={s.max_iters}, the poly schedule's "
                          "horizon (its LR would turn negative); raise max_iters or lower iters")
    if not (math.isfinite(s.lr) and s.lr > 0):
        raise ConfigError(f"{stage}.lr={s.lr} must be a finite number > 0")


def train_stage(cfg: ProCAConfig, stage: Stage, run_dir: Path, device: torch.device,
                resume: Path | None = None) -> Path:
    """Run one stage into ``run_dir`` (``resume``: run dir or snapshot); returns ``model.pt`` (+ ``model_best.pt``)."""
    s: StageConfig = getattr(cfg, stage)
    check_stage(s, stage)
    if resume is None:  # a stage's result depends on its config only, not on what ran before in this process
        dist.seed_all(cfg.seed)
    model = build_model(cfg, s.init, device).train()
    backbone_params, head_params = parameter_groups(model)
    optimizers = {
        "backbone": torch.optim.SGD(backbone_params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay),
        "head": torch.optim.SGD(head_params, lr=s.lr * s.head_lr_mult, momentum=s.momentum,
                                weight_decay=s.weight_decay),
    }
    estimators = load_prototypes(cfg, model.backbone.out_channels, device) if stage == "proca" else ()
    start = 0
    best: dict | None = None  # {"mIoU", "step", "model": CPU weights}: the best-on-validation model so far
    last: dict | None = None  # {"mIoU", "step"} of the latest evaluation
    if resume is not None:
        path = resolve_resume(resume)
        start, extra = restore(load_checkpoint(path), {"model": model}, optimizers, source=str(path))
        for estimator, key in zip(estimators, ("feat", "out")):
            estimator.load_state_dict(extra[key])
        if extra.get("best") is not None:  # weights None: the best is the snapshot's own model
            saved = extra["best"]
            best = {"mIoU": saved["mIoU"], "step": saved["step"],
                    "model": saved["model"] if saved["model"] is not None else _cpu_weights(model)}
            last = extra.get("last")
        elif start > 0:
            dist.print0(f"note: {path} records no best model (older version); model_best.pt only covers the "
                        "evaluations from here on")
        dist.print0(f"resumed {stage} from {path} at iteration {start}")
    source, target = _stage_data(cfg, stage, start)
    val = val_batches(cfg)
    manager = CheckpointManager(run_dir, keep_last=2)
    logger = ScalarLogger(run_dir, tensorboard=False)
    with Progress(s.iters, desc=stage, unit="it", initial=start) as progress:
        for it in range(start, s.iters):
            lr = poly_lr(s.lr, it, s.max_iters, s.lr_power)
            optimizers["backbone"].param_groups[0]["lr"] = lr
            optimizers["head"].param_groups[0]["lr"] = lr * s.head_lr_mult
            images, labels = (t.to(device) for t in next(source))
            if stage == "proca":
                losses = proca_losses(model, (images, labels), next(target)[0].to(device), cfg, *estimators)
            else:
                losses = {"total": supervised_loss(model(images)[1], labels, s.lambda_lov)}
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            dist.all_reduce_grads([p for p in model.parameters() if p.requires_grad])
            for opt in optimizers.values():
                opt.step()
            scalars = {f"loss/{k}": float(v.detach()) for k, v in losses.items()}
            done = it + 1
            if done % s.eval_every == 0 or done == s.iters:
                last = {"mIoU": val_miou(model, val, cfg, device), "step": done}
                if best is None or last["mIoU"] > best["mIoU"]:  # official: strictly better than the best so far
                    best = {**last, "model": _cpu_weights(model)}
                scalars["val/mIoU"], scalars["val/best_mIoU"] = last["mIoU"], best["mIoU"]
            logger.log(done, lr=lr, **scalars)
            progress.update(1, loss=scalars["loss/total"])
            if done % s.snapshot_every == 0 or done == s.iters:
                extra = {key: e.state_dict() for key, e in zip(("feat", "out"), estimators)}
                if best is not None:  # the weights only when they are not the snapshot's own
                    extra["best"] = {"mIoU": best["mIoU"], "step": best["step"],
                                     "model": None if best["step"] == done else best["model"]}
                    extra["last"] = last
                manager.save(capture(done, {"model": model}, optimizers, extra, to_dict(cfg)))
    logger.close()
    final = save_model(model, run_dir / MODEL_FILE, s.iters, cfg,
                       extra={"val/mIoU": last["mIoU"]} if last and last["step"] == s.iters else None)
    if best is not None:
        save_model(model, run_dir / BEST_MODEL_FILE, best["step"], cfg, weights=best["model"],
                   extra={"val/mIoU": best["mIoU"]})
        final_text = f"{last['mIoU']:.2f} (iteration {last['step']})" if last else "not recorded"
        dist.print0(f"{stage}: val mIoU final {final_text}, best {best['mIoU']:.2f} (iteration {best['step']}) "
                    f"-> {run_dir / BEST_MODEL_FILE}")
    if estimators and dist.is_main():
        atomic_save({"feat": estimators[0].state_dict(), "out": estimators[1].state_dict()}, run_dir / PROTOTYPES_FILE)
    dist.barrier()
    return final
