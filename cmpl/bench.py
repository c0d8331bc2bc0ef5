"""``python -m cmpl.bench [--what decode|train] [--device cuda]``: CMPL's two costs.

- ``decode``: clips/s of the video pipeline (OpenCV decoding + weak and strong views) through a ``DataLoader`` with
  0 and ``--workers`` workers, on ``--videos`` MJPG files written for the bench (``--size`` px, ``--frames`` frames),
  or on a user's list (``--list`` with ``--root``);
- ``train``: training clips/s (labelled + unlabelled) of CMPL against FixMatch at the same batch and the paper's
  networks (SlowOnly-R50 8x8 + x1/4 auxiliary 32x2 at ``--crop`` px) or the tiny setting (``--setting tiny``):
  the auxiliary's overhead (spec: about 7 % of the primary's parameters).

Medians of ``--reps`` timed repetitions after one warm-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from cmpl.config import CMPLConfig, config_path
from cmpl.data import VideoClips, VideoRecord, read_list
from cmpl.training import Views, build_network, ssl_step
from common.config import load_config
from common.dist import DeviceError, resolve_device
from common.threads import configure_threads
from common.timing import median_seconds


def write_videos(folder: Path, count: int, frames: int, size: int) -> list[VideoRecord]:
    """``count`` MJPG videos of moving noise for the decoding bench."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        path = folder / f"bench{i}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size * 4 // 3, size))
        base = rng.integers(0, 256, (size, size * 4 // 3, 3), dtype=np.uint8)
        for f in range(frames):
            writer.write(np.roll(base, f, axis=1))
        writer.release()
        records.append(VideoRecord(str(path), i % 2))
    return records


def decode_rate(cfg: CMPLConfig, records: list[VideoRecord], workers: int, batch: int) -> float:
    """Clips/s of weak + strong views through a DataLoader."""
    dataset = Views(VideoClips(records, cfg.aux.clip_len, cfg.aux.frame_interval), cfg, strong=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    next(iter(loader))  # warm-up: worker start
    start, clips = time.perf_counter(), 0
    for weak, _, _ in loader:
        clips += len(weak)
    return clips / (time.perf_counter() - start)


def train_rate(cfg: CMPLConfig, method: str, batch: int, reps: int, device: torch.device) -> float:
    """Training clips/s (labelled + unlabelled) of ``method`` on random clips."""
    cfg.ssl.method = method
    classes = cfg.data.num_classes
    nets = {"primary": build_network(cfg.primary, classes).to(device)}
    if method == "cmpl":
        nets["aux"] = build_network(cfg.aux, classes).to(device)
    memory_format = torch.channels_last_3d if cfg.train.channels_last else torch.contiguous_format
    for net in nets.values():
        net.to(memory_format=memory_format)
    params = [p for net in nets.values() for p in net.parameters()]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    side = cfg.augment.crop
    x = torch.randn(batch, 3, cfg.aux.clip_len, side, side, device=device).contiguous(memory_format=memory_format)
    u = torch.randn(batch * cfg.ssl.mu, 3, cfg.aux.clip_len, side, side, device=device
                    ).contiguous(memory_format=memory_format)
    y = torch.randint(classes, (batch,), device=device)
    truth = torch.randint(classes, (len(u),), device=device)

    def step() -> None:
        loss, _ = ssl_step(cfg, nets, x, y, u, u, truth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch * (1 + cfg.ssl.mu) / median_seconds(step, reps, device)


@click.command()
@click.option("--what", type=click.Choice(["decode", "train"]), default="train", show_default=True)
@click.option("--setting", type=click.Choice(["paper", "tiny"]), default="paper", show_default=True)
@click.option("--batch", default=2, show_default=True, type=click.IntRange(min=1), help="Labelled clips per step.")
@click.option("--crop", default=None, type=click.IntRange(min=32), help="train: crop side [paper 224, CPU use 112].")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="decode: workers.")
@click.option("--videos", default=16, show_default=True, type=click.IntRange(min=1), help="decode: videos written.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=32), help="decode: video height.")
@click.option("--frames", default=80, show_default=True, type=click.IntRange(min=1), help="decode: frames each.")
@click.option("--list", "list_file", default=None, help="decode: a user's list file instead of written videos.")
@click.option("--root", default="", help="decode: the list's root folder.")
@click.option("--channels-last/--contiguous", default=None, help="train: channels_last_3d weights and clips "
              "[the config's train.channels_last: tiny on, paper off].")
@click.option("--reps", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
def main(what: str, setting: str, batch: int, crop: int | None, workers: int, videos: int, size: int, frames: int,
         list_file: str | None, root: str, channels_last: bool | None, reps: int, device: str) -> None:
    """Decoding clips/s, or training clips/s of CMPL against FixMatch."""
    try:
        dev = resolve_device(device)
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    configure_threads()
    cfg = load_config(CMPLConfig, config_path("k400_1pct" if setting == "paper" else "tiny"))
    if crop:
        cfg.augment.crop, cfg.augment.resize = crop, crop * 8 // 7
    if channels_last is not None:
        cfg.train.channels_last = channels_last
    if what == "decode":
        with tempfile.TemporaryDirectory() as folder:
            records = read_list(list_file, root) if list_file else write_videos(Path(folder), videos, frames, size)
            for n in (0, workers):
                click.echo(f"decode + views: {decode_rate(cfg, records, n, batch):.1f} clips/s with {n} workers "
                           f"({cfg.aux.clip_len}x{cfg.aux.frame_interval} frames, crop {cfg.augment.crop})")
        return
    fixmatch = train_rate(cfg, "fixmatch", batch, reps, dev)
    cmpl = train_rate(cfg, "cmpl", batch, reps, dev)
    layout = "channels_last_3d" if cfg.train.channels_last else "contiguous"
    click.echo(f"{setting} at crop {cfg.augment.crop}, batch {batch} + {batch * cfg.ssl.mu} unlabelled, {dev}, "
               f"{layout}: "
               f"FixMatch {fixmatch:.2f} clips/s, CMPL {cmpl:.2f} clips/s ({cmpl / fixmatch:.2f}x)")


if __name__ == "__main__":
    main()
