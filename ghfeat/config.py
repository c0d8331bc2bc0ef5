"""GH-Feat config: the official ``train_ghfeat.py`` / ``training_loop_ghfeat.py`` defaults (spec ghfeat.md §2.2, §6).

Two official flags are inverted (``action='store_false'``): ``--mirror_augment`` turns x-flips OFF (they are on by
default) and ``--pretrained_D`` gives a freshly initialised D (by default D starts from the generator pickle's D).
Here both are plain booleans named for what they do, with the official defaults: ``data.mirror: true``,
``train.pretrained_D: true``. ``configs/*.yaml`` set the rows; ``tiny.yaml`` is the CPU setting of spec §8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import ConfigError, config_row, config_rows

CONFIG_DIR = Path(__file__).with_name("configs")
BATCH_PER_GPU = {128: 16, 256: 12, 512: 8, 1024: 4}  # official: per-GPU batch by resolution
TOTAL_KIMG = {128: 12000, 256: 14000, 512: 16000, 1024: 18000}  # official: length by resolution
TINY_SOURCE = "shapes32"  # generator.path naming the cached tiny source GAN (common.stylegan2.pretrained)


@dataclass
class GHFeatGenerator:
    """The frozen generator: a project snapshot / run dir, an official StyleGAN2-ADA ``.pkl`` or ``shapes32``."""

    path: str | None = None


@dataclass
class GHFeatEncoderConfig:
    """``ghfeat.encoder.GHFeatEncoder`` arguments. Official: depth 50 (the CLI's; the function's default is 18),
    FPN 512; a null ``filters``/``units``/``bottleneck`` takes them from ``depth``."""

    depth: int | None = 50
    fpn_channels: int = 512
    filters: list[int] | None = None
    units: list[int] | None = None
    bottleneck: bool | None = None
    stem_stride: int = 4
    extra_channels: int = 2048


@dataclass
class GHFeatOptim:
    """Adam for E and D (beta1 0.9, beta2 0.99, eps 1e-8) at lr * decay_rate ** (step / decay_every).
    ``d_lr`` null: D follows E's rate (official: one rate tensor drives both)."""

    lr: float = 1e-4
    d_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    decay_rate: float = 0.8
    decay_every: int | None = None  # None: iterations // 4 (train_ghfeat.py overrides the lr dict's 30000)

    def __post_init__(self) -> None:
        for key in ("lr", "d_lr"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"optim.{key} must be a finite number > 0, got {value}")
        if not 0 < self.decay_rate <= 1:
            raise ConfigError(f"optim.decay_rate is a factor in (0, 1], got {self.decay_rate}")
        if self.decay_every is not None and self.decay_every < 1:
            raise ConfigError(f"optim.decay_every must be >= 1 iteration (or null: iterations // 4), got "
                              f"{self.decay_every}")


@dataclass
class GHFeatTrain:
    """Length and bookkeeping. Official: a tick is 65 kimg, an image grid every tick, a snapshot every 10 ticks,
    a log line every 50 iterations."""

    batch: int = 96  # official: 12 per GPU x 8 GPUs at 256 px
    total_kimg: float = 14000.0  # official at 256 px
    pretrained_D: bool = True  # official default (the --pretrained_D flag, store_false, turns it off)
    log_every: int = 50
    image_kimg: float = 65.0
    snapshot_kimg: float = 650.0
    keep_snapshots: int = 3

    def __post_init__(self) -> None:
        for key in ("batch", "log_every", "keep_snapshots"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("total_kimg", "image_kimg", "snapshot_kimg"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{key} must be a finite number > 0, got {value}")

    def iterations(self) -> int:
        """max_iters = total_kimg * 1000 / batch (145,833 at 256 px on 8 GPUs)."""
        return max(int(self.total_kimg * 1000 // self.batch), 1)

    def every(self, kimg: float) -> int:
        """``kimg`` in iterations of ``batch`` (at least 1)."""
        return max(round(kimg * 1000 / self.batch), 1)


@dataclass
class GHFeatLoss:
    """E = pixel + feature_scale * perceptual + d_scale * adversarial; D = logistic + R1 (``loss.py``).

    ``perceptual``: ``vgg16`` (official: conv4_3; ``vgg16_weights`` a torchvision VGG16 ImageNet file, else the
    usual weight lookup of ``common.metrics.weights``) or ``d_features`` (offline: a frozen copy of the source D's
    ``d_levels`` block outputs, spec §8). ``r1_every``: 1 is official (R1 every step); N > 1 is lazy R1 with the
    penalty scaled by N (tiny)."""

    feature_scale: float = 5e-5
    d_scale: float = 0.08  # train_ghfeat.py --d_scale (the loss function's own default is 0.1)
    r1_gamma: float = 10.0
    r1_every: int = 1
    perceptual: Literal["vgg16", "d_features"] = "vgg16"
    vgg16_weights: str | None = None
    d_levels: list[str] = field(default_factory=lambda: ["b32", "b16", "b8"])

    def __post_init__(self) -> None:
        for key in ("feature_scale", "d_scale", "r1_gamma"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"loss.{key} must be a finite number >= 0, got {value}")
        if self.r1_every < 1:
            raise ConfigError(f"loss.r1_every must be >= 1 (1: every iteration, official), got {self.r1_every}")


@dataclass
class GHFeatData:
    """Real images: a StyleGAN2-ADA folder / zip at G's resolution (``path``), or offline ``shapes``."""

    source: Literal["path", "shapes"] = "path"
    path: str | None = None
    num_images: int = 12000  # shapes only
    shapes_seed: int = 1  # shapes only; the source GAN saw seed 0, the probes' labelled images are seed 2
    mirror: bool = True  # official default (the --mirror_augment flag, store_false, turns flips off)
    workers: int = 3

    def __post_init__(self) -> None:
        if self.num_images < 1 or self.workers < 0:
            raise ConfigError(f"data.num_images must be >= 1 and data.workers >= 0, got {self.num_images} and "
                              f"{self.workers}")


@dataclass
class GHFeatConfig:
    """One GH-Feat training run."""

    seed: int = 1000  # official rnd.np_random_seed
    generator: GHFeatGenerator = field(default_factory=GHFeatGenerator)
    encoder: GHFeatEncoderConfig = field(default_factory=GHFeatEncoderConfig)
    optim: GHFeatOptim = field(default_factory=GHFeatOptim)
    train: GHFeatTrain = field(default_factory=GHFeatTrain)
    loss: GHFeatLoss = field(default_factory=GHFeatLoss)
    data: GHFeatData = field(default_factory=GHFeatData)


def learning_rate(optim: GHFeatOptim, step: int, iterations: int, base: float | None = None) -> float:
    """``tf.train.exponential_decay(lr, step, decay_every, rate, staircase=False)``: lr * rate ** (step / every).

    One step per iteration. The official graph probably advanced its step counter twice per iteration (the increment
    is a control dependency of both optimisers' updates, which run in separate ``sess.run`` calls; spec §2.2), which
    would end at 1e-4 * 0.8^8 instead of 0.8^4; this follows the written schedule. ``base`` replaces ``optim.lr``
    (D's rate when ``optim.d_lr`` is set).
    """
    every = optim.decay_every if optim.decay_every is not None else max(iterations // 4, 1)
    return (optim.lr if base is None else base) * optim.decay_rate ** (step / every)


def config_path(name: str) -> Path:
    """``ghfeat/configs/<name>.yaml`` for a row name (``ffhq256``), or ``name`` itself when it is a file."""
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    """The config rows shipped with the package."""
    return config_rows(CONFIG_DIR)
