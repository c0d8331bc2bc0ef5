"""CMPL's loop (spec cmpl.md §2.4): per iteration B labelled clips and mu B unlabelled clips.

    weak views alpha(x), alpha(u) and strong views S(u) of the same decoded frames (the primary takes every
    ``primary_step``-th frame of the auxiliary-rate clip)
    -> each network on cat[alpha(x), alpha(u), S(u)] (one forward, FixMatch's batching)
    -> pseudo-labels from the weak unlabelled logits (stop-gradient) -> L_s + lambda L_u
    -> one SGD step for both networks (one optimiser), gradient-norm clip, cosine lr with linear warm-up.

``ssl.method`` picks the unsupervised term: ``cmpl`` (A teaches F and F teaches A), ``cmpl_aux_to_primary`` (A
teaches F only), ``fixmatch`` (F teaches itself, no A), ``supervised`` (none; A trained on the labels too with
``ssl.supervised_aux``). Logged per direction: mask rate,
pseudo-label accuracy (the unlabelled clips' true labels are used for this log only), and the complementarity of
F and A on the unlabelled batch (the share where exactly one of them is confidently right). Snapshots hold both
networks, the optimiser, the step and the RNG; resume continues the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cmpl.augment import build_view, eval_view
from cmpl.cmpl import PseudoLabels, cmpl_unsupervised_loss, fixmatch_unsupervised_loss, supervised_loss
from cmpl.config import CMPLConfig, NetConfig
from cmpl.data import VideoClips, label_split, read_list
from cmpl.inflate import load_inflated
from cmpl.slowonly import Recognizer
from cmpl.synthetic import motion_clips, num_classes
from common import checkpoint, dist
from common.config import ConfigError, to_dict
from common.data import DatasetError, infinite_loader
from common.logging import Progress, ScalarLogger
from common.metrics.classification import topk_accuracy


class ArrayClips(torch.utils.data.Dataset):
    """In-memory clips (N, T, H, W, 3) uint8 with labels, items shaped like :class:`cmpl.data.VideoClips`': the first
    ``clip_len`` frames ``frame_interval`` apart (the auxiliary's sampling; the whole clip by default)."""

    def __init__(self, clips: np.ndarray, labels: np.ndarray, clip_len: int | None = None,
                 frame_interval: int = 1) -> None:
        self.clips, self.labels = clips, labels
        self.frames = slice(0, (clip_len or clips.shape[1]) * frame_interval, frame_interval)
        if len(range(*self.frames.indices(clips.shape[1]))) != (clip_len or clips.shape[1]):
            raise ConfigError(f"{clip_len} frames {frame_interval} apart do not fit the {clips.shape[1]}-frame "
                              "synthetic clips; set aux.clip_len / aux.frame_interval")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.clips[index][self.frames], int(self.labels[index])


class Views(torch.utils.data.Dataset):
    """(weak view, strong view or an empty tensor, label) of each clip of ``source``."""

    def __init__(self, source: torch.utils.data.Dataset, cfg: CMPLConfig, strong: bool) -> None:
        self.source, self.weak, self.strong = source, build_view(cfg.augment, False), None
        if strong:
            self.strong = build_view(cfg.augment, True)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        frames, label = self.source[index]
        strong = self.strong(frames) if self.strong is not None else torch.empty(0)
        return self.weak(frames), strong, label


def build_network(net: NetConfig, classes: int) -> Recognizer:
    try:
        return Recognizer(classes, net.width, net.inflate, net.stage_blocks, net.dropout, net.stem_stride)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def clip_sources(cfg: CMPLConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, np.ndarray, int]:
    """(training clips, test clips, training labels, number of classes) of ``cfg.data``."""
    d = cfg.data
    if d.source == "synthetic":
        train_clips, train_labels = motion_clips(d.synthetic_train, 0, d.synthetic_frames, d.synthetic_size,
                                                 d.synthetic_appearance)
        test_clips, test_labels = motion_clips(d.synthetic_test, 1, d.synthetic_frames, d.synthetic_size,
                                               d.synthetic_appearance)
        a = cfg.aux
        return (ArrayClips(train_clips, train_labels, a.clip_len, a.frame_interval),
                ArrayClips(test_clips, test_labels, a.clip_len, a.frame_interval), train_labels,
                num_classes(d.synthetic_appearance))
    if not d.train_list or not d.val_list:
        raise DatasetError("data.source is 'lists': give data.train_list and data.val_list (mmaction2 lists or the "
                           "UCF-101 split files with data.class_index)")
    train = read_list(d.train_list, d.root, d.class_index)
    test = read_list(d.val_list, d.val_root or d.root, d.class_index)
    labels = np.array([r.label for r in train])
    if labels.max() >= d.num_classes:
        raise ConfigError(f"{d.train_list} has label {labels.max()} but data.num_classes is {d.num_classes}")
    a = cfg.aux
    return (VideoClips(train, a.clip_len, a.frame_interval, on_error=d.on_error),
            VideoClips(test, a.clip_len, a.frame_interval, test=True, on_error=d.on_error), labels, d.num_classes)


def learning_rate(cfg: CMPLConfig, step: int) -> float:
    """Linear warm-up over ``optim.warmup_iterations``, then cosine to 0 at ``train.iterations``."""
    o, total = cfg.optim, cfg.train.iterations
    if step < o.warmup_iterations:
        return o.lr * (step + 1) / o.warmup_iterations
    progress = (step - o.warmup_iterations) / max(total - o.warmup_iterations, 1)
    return o.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _uses_aux(cfg: CMPLConfig) -> bool:
    return cfg.ssl.method in ("cmpl", "cmpl_aux_to_primary") or (cfg.ssl.method == "supervised"
                                                                  and cfg.ssl.supervised_aux)


def _direction_stats(name: str, labels: PseudoLabels, truth: Tensor) -> dict[str, float]:
    mask = labels.mask.bool()
    correct = (labels.labels[mask] == truth[mask]).float().mean().item() if mask.any() else float("nan")
    return {f"{name}/mask_rate": labels.mask.mean().item(), f"{name}/label_accuracy": correct}


def ssl_step(cfg: CMPLConfig, nets: dict[str, nn.Module], x: Tensor, y: Tensor, u_weak: Tensor, u_strong: Tensor,
             u_truth: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The loss of one iteration and its log (see the module docstring)."""
    step = cfg.primary_step()
    b, n = len(x), len(u_weak)
    logits = {}
    for name, net in nets.items():
        frames = slice(None, None, step) if name == "primary" else slice(None)
        inputs = torch.cat([x, u_weak, u_strong]) if cfg.ssl.method != "supervised" else x
        out = net(inputs[:, :, frames])
        logits[name] = (out[:b], out[b : b + n], out[b + n :])
    loss_s = sum(supervised_loss(lg[0], y) for lg in logits.values())
    log: dict[str, float] = {"loss_s": float(loss_s.detach())}
    loss_u = torch.zeros((), device=x.device)
    if cfg.ssl.method == "fixmatch":
        loss_u, self_labels = fixmatch_unsupervised_loss(logits["primary"][1], logits["primary"][2], cfg.ssl.tau)
        log.update(_direction_stats("primary_to_primary", self_labels, u_truth))
    elif cfg.ssl.method in ("cmpl", "cmpl_aux_to_primary"):
        (pw, ps), (aw, as_) = logits["primary"][1:], logits["aux"][1:]
        if cfg.ssl.method == "cmpl":
            loss_u, from_primary, from_aux = cmpl_unsupervised_loss(pw, aw, ps, as_, cfg.ssl.tau)
            log.update(_direction_stats("primary_to_aux", from_primary, u_truth))
        else:
            from_primary = PseudoLabels.from_logits(pw, cfg.ssl.tau)
            from_aux = PseudoLabels.from_logits(aw, cfg.ssl.tau)
            loss_u = from_aux.loss(ps)
        log.update(_direction_stats("aux_to_primary", from_aux, u_truth))
        right_p = from_primary.mask.bool() & (from_primary.labels == u_truth)
        right_a = from_aux.mask.bool() & (from_aux.labels == u_truth)
        log["complementarity"] = (right_p ^ right_a).float().mean().item()
    log["loss_u"] = float(loss_u.detach())
    return loss_s + cfg.ssl.lambda_u * loss_u, log


@torch.no_grad()
def evaluate(cfg: CMPLConfig, nets: dict[str, nn.Module], test: torch.utils.data.Dataset, device: torch.device,
             batch: int = 32) -> dict[str, float]:
    """Top-1 / top-5 of each network on the test clips: one centre clip each (quick validation; ``eval.py`` runs
    the multi-view protocol)."""
    view = eval_view(cfg.augment)
    step = cfg.primary_step()
    scores: dict[str, list[Tensor]] = {name: [] for name in nets}
    labels = []
    for start in range(0, len(test), batch):
        items = [test[i] for i in range(start, min(start + batch, len(test)))]
        clips = torch.stack([view(frames) for frames, _ in items]).to(device)
        labels += [label for _, label in items]
        for name, net in nets.items():
            net.eval()
            scores[name].append(net(clips[:, :, ::step] if name == "primary" else clips).cpu())
            net.train()
    truth = torch.tensor(labels)
    out = {}
    for name, parts in scores.items():
        classes = parts[0].shape[1]
        acc = topk_accuracy(torch.cat(parts), truth, (1, min(5, classes)))
        out[f"{name}/top1"], out[f"{name}/top5"] = acc[1], acc[min(5, classes)]
    return out


@dataclass
class TrainedCMPL:
    nets: dict[str, nn.Module]
    step: int
    scalars: dict[str, float]
    labelled: np.ndarray  # indices of the labelled training clips


class IntervalMeans:
    """Means of each logged scalar over the iterations since the last log (NaN entries, e.g. a pseudo-label
    accuracy with no confident clip in the batch, are left out)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            if math.isfinite(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self) -> dict[str, float]:
        means = {key: total / self.counts[key] for key, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


def train_cmpl(cfg: CMPLConfig, run_dir: str | Path, device: torch.device | str = "cpu",
               resume: str | Path | None = None, max_iterations: int | None = None) -> TrainedCMPL:
    """Train until ``train.iterations`` (or ``max_iterations`` more)."""
    device, run_dir = torch.device(device), Path(run_dir)
    cfg.primary_step()
    world = dist.get_world_size()
    if cfg.train.batch % world:
        raise ConfigError(f"train.batch={cfg.train.batch} is not divisible by the {world} processes")
    run_dir.mkdir(parents=True, exist_ok=True)
    dist.seed_all(cfg.seed)
    train_source, test_source, train_labels, classes = clip_sources(cfg)
    split_path = cfg.data.split_file or str(run_dir / "split.json")
    labelled = label_split(train_labels, cfg.data.label_fraction, cfg.data.split_seed, split_path)
    nets = {"primary": build_network(cfg.primary, classes).to(device)}
    if _uses_aux(cfg):
        nets["aux"] = build_network(cfg.aux, classes).to(device)
    for name, net in nets.items():
        if getattr(cfg, name).pretrained and resume is None:
            load_inflated(net.backbone, getattr(cfg, name).pretrained)
    memory_format = torch.channels_last_3d if cfg.train.channels_last else torch.contiguous_format
    for net in nets.values():
        net.to(memory_format=memory_format)
    params = [p for net in nets.values() for p in net.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                          weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
    manager = checkpoint.CheckpointManager(run_dir, keep_last=cfg.train.keep_snapshots)
    step = 0
    if resume is not None:
        path = checkpoint.resolve_resume(resume)
        step, _ = checkpoint.restore(checkpoint.load_checkpoint(path, map_location=device), nets, {"opt": opt},
                                     source=str(path))
        dist.print0(f"resumed from {path} at iteration {step}")
    wrapped = {name: dist.wrap_ddp(nn.SyncBatchNorm.convert_sync_batchnorm(net) if device.type == "cuda" and world > 1
                                   else net, device) for name, net in nets.items()}
    per_rank = cfg.train.batch // world
    strong = cfg.ssl.method != "supervised"
    labelled_loader = infinite_loader(Views(torch.utils.data.Subset(train_source, labelled.tolist()), cfg, False),
                                      per_rank, dist.get_rank(), world, cfg.seed, start=step * per_rank,
                                      num_workers=cfg.data.workers)
    unlabelled_loader = (infinite_loader(Views(train_source, cfg, True), per_rank * cfg.ssl.mu, dist.get_rank(),
                                         world, cfg.seed + 1, start=step * per_rank * cfg.ssl.mu,
                                         num_workers=cfg.data.workers) if strong else None)
    logger = ScalarLogger(run_dir) if dist.is_main() else None
    stop = cfg.train.iterations if max_iterations is None else min(cfg.train.iterations, step + max_iterations)
    scalars: dict[str, float] = {}
    means = IntervalMeans()
    with Progress(cfg.train.iterations, desc="cmpl", unit="it", initial=step) as progress:
        while step < stop:
            x, _, y = next(labelled_loader)
            if unlabelled_loader is not None:
                u_weak, u_strong, u_truth = next(unlabelled_loader)
            else:
                u_weak = u_strong = torch.empty(0, *x.shape[1:])
                u_truth = torch.empty(0, dtype=torch.long)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            x, u_weak, u_strong = (t.to(device).contiguous(memory_format=memory_format) for t in (x, u_weak, u_strong))
            loss, scalars = ssl_step(cfg, wrapped, x, y.to(device), u_weak, u_strong, u_truth.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip is not None:
                scalars["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip))
            opt.step()
            step += 1
            progress.update(1, loss=float(loss.detach()))
            means.add(scalars)
            tested = evaluate(cfg, nets, test_source, device) if step % cfg.train.eval_every == 0 or step == stop \
                else {}
            if step % cfg.train.log_every == 0 or step == stop or tested:
                scalars = {**means.pop(), **tested}
                if logger is not None:
                    logger.log(step, lr=opt.param_groups[0]["lr"], **scalars)
            if step % cfg.train.snapshot_every == 0 or step == stop:
                manager.save(checkpoint.capture(step, nets, {"opt": opt}, extra={"labelled": labelled.tolist()},
                                                config=to_dict(cfg)))
    if logger is not None:
        logger.close()
    return TrainedCMPL(nets, step, scalars, labelled)
