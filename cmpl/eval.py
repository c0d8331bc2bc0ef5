"""``python -m cmpl.eval --ckpt RUN_DIR [--views 10x3]``: top-1 / top-5 of the primary (and the auxiliary) with the
multi-view test protocol: ``num_clips`` clips uniformly over the video x ``crops`` spatial crops (1: centre; 3:
both ends and the middle of the longer side, mmaction2's ThreeCrop), scores averaged per video (softmax probabilities
by default, ``common.metrics.classification.average_views``)."""

from __future__ import annotations

import json

import click
import numpy as np
import torch

from cmpl.augment import MEAN, STD
from cmpl.config import CMPLConfig
from cmpl.data import VideoClips
from cmpl.training import ArrayClips, build_network, clip_sources
from common import checkpoint
from common.cli import user_errors
from common.config import config_from_dict
from common.dist import DeviceError, resolve_device
from common.logging import progress
from common.metrics.classification import average_views, topk_accuracy
from common.threads import configure_threads


def crops(frames: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    """``count`` (1 or 3) square crops of side ``size`` of (T, H, W, 3) frames: the centre, or ThreeCrop."""
    t, h, w, _ = frames.shape
    if count == 1:
        top, left = (h - size) // 2, (w - size) // 2
        return [frames[:, top : top + size, left : left + size]]
    if h >= w:
        left = (w - size) // 2
        return [frames[:, y : y + size, left : left + size] for y in (0, (h - size) // 2, h - size)]
    top = (h - size) // 2
    return [frames[:, top : top + size, x : x + size] for x in (0, (w - size) // 2, w - size)]


def _resize(frames: np.ndarray, short: int | None) -> np.ndarray:
    if not short:
        return frames
    import cv2

    t, h, w, _ = frames.shape
    scale = short / min(h, w)
    size = (round(w * scale), round(h * scale))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def _tensor(frames: np.ndarray) -> torch.Tensor:
    x = (torch.from_numpy(np.ascontiguousarray(frames)).float() - torch.tensor(MEAN)) / torch.tensor(STD)
    return x.permute(3, 0, 1, 2)  # (C, T, H, W)


@torch.no_grad()
def multi_view_scores(cfg: CMPLConfig, nets: dict[str, torch.nn.Module], test: torch.utils.data.Dataset,
                      num_clips: int, num_crops: int, device: torch.device
                      ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per network (N, V, C) view scores and the labels (N,)."""
    step = cfg.primary_step()
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in nets}
    labels = []
    if isinstance(test, VideoClips):
        test.num_clips, test.test = num_clips, True
    for index in progress(range(len(test)), total=len(test), desc="eval", unit="video"):
        frames, label = test[index]
        video = isinstance(test, VideoClips)
        clips = frames.reshape(-1, cfg.aux.clip_len, *frames.shape[1:]) if video else frames[None]
        views = [_tensor(c) for clip in clips for c in crops(_resize(clip, cfg.augment.resize), cfg.augment.crop,
                                                             num_crops)]
        batch = torch.stack(views).to(device)
        for name, net in nets.items():
            scores[name].append(net(batch[:, :, ::step] if name == "primary" else batch).cpu())
        labels.append(label)
    return {name: torch.stack(parts) for name, parts in scores.items()}, torch.tensor(labels)


@click.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True), help="CMPL run dir or snapshot.")
@click.option("--views", default=None, help="CLIPSxCROPS, e.g. 10x3 [the config's eval section].")
@click.option("--device", default=None, help="cpu, cuda or cuda:N [auto].")
def main(ckpt: str, views: str | None, device: str | None) -> None:
    """Multi-view top-1 / top-5 of the primary and the auxiliary network of a CMPL run."""
    configure_threads()
    try:
        dev = resolve_device(device)
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    with user_errors():
        path = checkpoint.resolve_resume(ckpt, flag="--ckpt")
        saved = checkpoint.load_checkpoint(path)
        if saved.get("config") is None or "primary" not in saved["modules"]:
            raise checkpoint.CheckpointError(f"{path} is not a CMPL snapshot (no config or primary network)")
        cfg = config_from_dict(CMPLConfig, saved["config"], source=str(path))
        num_clips, num_crops = cfg.eval.num_clips, cfg.eval.crops
        if views:
            try:
                num_clips, num_crops = (int(v) for v in views.lower().split("x"))
            except ValueError:
                raise click.UsageError(f"--views is CLIPSxCROPS, e.g. 10x3, got {views!r}") from None
            if num_clips < 1 or num_crops not in (1, 3):
                raise click.UsageError(f"--views {views}: clips >= 1 and crops 1 or 3")
        _, test, _, classes = clip_sources(cfg)
        if isinstance(test, ArrayClips) and num_clips > 1:
            num_clips = 1  # a synthetic clip is the whole video
        nets = {}
        for name in ("primary", "aux"):
            if name in saved["modules"]:
                net = build_network(getattr(cfg, name), classes)
                checkpoint.load_module_state(net, saved["modules"][name], name, str(path))
                nets[name] = net.to(dev).eval()
        scores, labels = multi_view_scores(cfg, nets, test, num_clips, num_crops, dev)
    result = {"views": f"{num_clips}x{num_crops}", "videos": len(labels)}
    for name, view_scores in scores.items():
        acc = topk_accuracy(average_views(view_scores, cfg.eval.average), labels, (1, min(5, classes)))
        result[f"{name}/top1"], result[f"{name}/top5"] = acc[1], acc[min(5, classes)]
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
