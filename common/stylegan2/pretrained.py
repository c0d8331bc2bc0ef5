"""A pretrained tiny StyleGAN2 on offline shapes: the source model of GenDA's and GH-Feat's tiny presets.

    path = pretrained_source_gan()                 # data/pretrained/shapes32-<key>.pt, trained on first use
    nets = load_networks(path)                     # G, D, G_ema; or train.init_from: <path>

The preset ``configs/shapes32.yaml`` is the tiny32 width of spec §9 (z = w = 64, 2 mapping layers, channel base
1024, max 64: G 263,987 and D 288,993 parameters) on 2,000 :func:`common.data.synthetic.shapes` at 32 px. Training
runs the shared loop once, with one thread and a fixed seed, so it is a pure function of the preset and this
module's :class:`SourceTraining` on one machine; the snapshot (a normal project snapshot, with its sample grid next
to it) is cached under ``data/`` like the proxy extractor's weights, named by a hash of everything it depends on.
Concurrent first uses each train and the first to finish keeps its file (they are identical).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from common.checkpoint import CheckpointManager
from common.config import load_config, to_dict
from common.paths import data_dir
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.training import replace_cfg, train


@dataclass(frozen=True)
class SourceTraining:
    """What the cached source GAN depends on besides the preset's values (its hash names the file)."""

    preset: str = "shapes32"
    seed: int = 0
    total_kimg: float | None = None  # None: the preset's budget (tests train a few iterations)
    version: int = 1  # bump when the loop or the networks change what training produces


def source_config(settings: SourceTraining = SourceTraining()) -> StyleGAN2Config:
    """The preset with the settings' seed; no metrics during training (a proxy-FD is reported by the packages)."""
    cfg = load_config(StyleGAN2Config, preset_path(settings.preset))
    budget = {"total_kimg": settings.total_kimg} if settings.total_kimg is not None else {}
    return replace_cfg(dataclasses.replace(cfg, seed=settings.seed), train={"metrics": ["none"], **budget})


def source_gan_path(settings: SourceTraining = SourceTraining()) -> Path:
    """``<data_dir>/pretrained/<preset>-<hash of the config and settings>.pt``."""
    blob = json.dumps({"config": to_dict(source_config(settings)), **dataclasses.asdict(settings)}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return data_dir() / "pretrained" / f"{settings.preset}-{key}.pt"


def pretrained_source_gan(settings: SourceTraining = SourceTraining()) -> Path:
    """The cached source GAN snapshot, trained now (with one thread) if it is not there yet."""
    path = source_gan_path(settings)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = source_config(settings)
    print(f"training the tiny source GAN once ({cfg.train.total_kimg:g} kimg of {cfg.preset}); cached as {path}")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    run_dir = Path(tempfile.mkdtemp(prefix=".source-gan-", dir=path.parent))
    try:
        train(cfg, run_dir)
        snapshot = CheckpointManager(run_dir).latest()
        grid = sorted(run_dir.glob("fakes*.png"))[-1]
        shutil.copyfile(grid, path.with_suffix(".png"))
        os.replace(snapshot, path)  # atomic: a concurrent trainer's identical file may land first
    finally:
        torch.set_num_threads(previous)
        shutil.rmtree(run_dir, ignore_errors=True)
    return path
