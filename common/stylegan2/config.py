"""Config schema of the StyleGAN2-ADA family and the official ``--cfg`` presets (spec §2.4).

Preset YAML files live in ``common/stylegan2/configs/`` (``auto``, ``stylegan2``, ``paper256``, ``paper512``,
``paper1024``, ``cifar``, ``tiny``); paper packages inherit them with ``base:``. Values a preset leaves ``null`` are
derived from the resolution and GPU count exactly as the official ``train.py`` derives the ``auto`` config
(:func:`resolve`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import ConfigError

PRESET_DIR = Path(__file__).with_name("configs")
PRESETS = ("auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar", "tiny", "shapes32", "limited")


@dataclass
class DataConfig:
    """Training data. ``source: path`` reads a StyleGAN2-ADA folder/zip; ``shapes``/``digits`` are generated offline."""

    source: Literal["path", "shapes", "digits"] = "path"
    path: str | None = None
    resolution: int | None = None  # None: the dataset's; required for generated sources
    num_images: int = 2000  # generated 'shapes' only
    cond: bool = False  # use dataset.json labels
    mirror: bool = False  # x-flips double the dataset
    subset: int | None = None  # seeded random subset of this many images (official --subset)
    subset_seed: int | None = None  # None: the run's seed, as the official --subset; set it to fix the subset
    workers: int = 3


@dataclass
class GeneratorConfig:
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int | None = 32768  # None ('auto'): 16384 below 512 px, 32768 from 512 px
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256


@dataclass
class DiscriminatorConfig:
    architecture: Literal["resnet", "orig", "skip"] = "resnet"
    channel_base: int | None = 32768
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256
    mbstd_group_size: int | None = 4  # None ('auto'): min(batch_gpu, 4)
    mbstd_num_channels: int = 1
    freeze_layers: int = 0  # Freeze-D (official --freezed)
    mapping_layers: int = 8  # label mapping of a conditional D (official default 8; InsGen's train.py sets 0)


@dataclass
class LossConfig:
    r1_gamma: float | None = 10.0  # None ('auto'): 0.0002 * res^2 / batch
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9

    def __post_init__(self) -> None:
        _at_least("loss.r1_gamma", self.r1_gamma, 0.0)
        _at_least("loss.pl_weight", self.pl_weight, 0.0)
        _at_least("loss.pl_batch_shrink", self.pl_batch_shrink, 1)
        if not 0 <= self.style_mixing_prob <= 1:
            raise ConfigError(f"loss.style_mixing_prob is a probability in [0, 1], got {self.style_mixing_prob}")


@dataclass
class OptimConfig:
    g_lr: float | None = 0.002  # None ('auto'): 0.002 at 1024 px, else 0.0025
    d_lr: float | None = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    g_reg_interval: int = 4
    d_reg_interval: int = 16

    def __post_init__(self) -> None:
        for key, lr in (("optim.g_lr", self.g_lr), ("optim.d_lr", self.d_lr)):
            if lr is not None and not (math.isfinite(lr) and lr > 0):
                raise ConfigError(f"{key} must be a finite number > 0 (or null: derived), got {lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must both be in [0, 1), got {list(self.betas)}")
        _at_least("optim.g_reg_interval", self.g_reg_interval, 0)
        _at_least("optim.d_reg_interval", self.d_reg_interval, 0)


@dataclass
class AugmentConfig:
    mode: Literal["ada", "noaug", "fixed"] = "ada"
    p: float = 0.0  # initial p ('ada') or the fixed p ('fixed')
    target: float = 0.6
    pipe: str = "bgc"
    interval: int = 4
    kimg: float = 500.0  # official: 100 when resuming from a pretrained pickle


@dataclass
class TrainConfig:
    total_kimg: float = 25000.0
    batch: int | None = 32  # None ('auto'): max(min(gpus * min(4096 // res, 32), 64), gpus)
    batch_gpu: int | None = None  # None: batch // gpus (fixed presets: batch // ref_gpus via the YAML)
    ema_kimg: float | None = 10.0  # None ('auto'): batch * 10 / 32
    ema_rampup: float | None = None
    kimg_per_tick: float = 4.0
    snap_ticks: int = 50  # snapshot + metrics every this many ticks
    keep_snapshots: int = 3
    metrics: list[str] = field(default_factory=lambda: ["fid50k_full"])  # see common/stylegan2/metrics.py
    inception_weights: str | None = None  # FID weights file; None: $GENFORCE_INCEPTION_WEIGHTS or the cache
    fp32: bool = False  # force fp32 everywhere (official --fp32)
    init_from: str | None = None  # pretrained start: a project snapshot/run dir or an official .pkl (--resume=pkl)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.total_kimg) and self.total_kimg > 0):
            raise ConfigError(f"train.total_kimg must be a finite number > 0, got {self.total_kimg}")
        if not (math.isfinite(self.kimg_per_tick) and self.kimg_per_tick > 0):
            raise ConfigError(f"train.kimg_per_tick must be a finite number > 0, got {self.kimg_per_tick}")
        _at_least("train.batch", self.batch, 1)
        _at_least("train.batch_gpu", self.batch_gpu, 1)
        _at_least("train.ema_kimg", self.ema_kimg, 0.0)
        _at_least("train.snap_ticks", self.snap_ticks, 1)
        _at_least("train.keep_snapshots", self.keep_snapshots, 1)


@dataclass
class ProbeConfig:
    """Over-fitting measurements every ``every`` iterations (0: off) and at the end: D's train vs held-out gap,
    proxy-FD, class entropy, retrieval (``common/stylegan2/probe.py``). Held-out images come from the dataset
    outside ``data.subset``."""

    every: int = 0
    heldout: int = 300
    num_fakes: int = 1000


@dataclass
class StyleGAN2Config:
    """One StyleGAN2-ADA training run. Every field of a preset is visible here with its official default."""

    preset: str = "stylegan2"
    seed: int = 0
    methods: list[str] = field(default_factory=list)  # paper methods combined in this run (common/stylegan2/compose.py)
    gpus: int = 1  # the GPU count the 'auto' derivations assume (official: --gpus)
    data: DataConfig = field(default_factory=DataConfig)
    G: GeneratorConfig = field(default_factory=GeneratorConfig)
    D: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)


def _at_least(key: str, value: float | None, low: float) -> None:
    """One line for a number below its range (None, a derived 'auto' value, passes)."""
    if value is not None and not (math.isfinite(value) and value >= low):
        raise ConfigError(f"{key} must be >= {low:g}, got {value}")


def preset_path(name: str) -> Path:
    """The YAML file of an official preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown StyleGAN2 preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESET_DIR / f"{name}.yaml"


def resolve(cfg: StyleGAN2Config, resolution: int, gpus: int | None = None) -> StyleGAN2Config:
    """Fill the 'auto' (null) values from the resolution and GPU count, as the official ``train.py`` does.

    batch = max(min(gpus * min(4096 // res, 32), 64), gpus); mbstd group = min(batch // gpus, 4);
    channel_base = 32768 at >= 512 px else 16384; lr = 0.002 at >= 1024 px else 0.0025;
    gamma = 0.0002 * res^2 / batch; ema_kimg = batch * 10 / 32; batch_gpu = batch // gpus.
    """
    gpus = cfg.gpus if gpus is None else gpus
    train = cfg.train
    batch = train.batch if train.batch is not None else max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    if batch % gpus:
        fits = [n for n in (batch - batch % gpus, batch + gpus - batch % gpus) if n > 0]
        raise ConfigError(
            f"train.batch {batch} does not split over {gpus} processes: set train.batch to a multiple of {gpus} "
            f"(e.g. {' or '.join(map(str, fits))})"
        )
    batch_gpu = train.batch_gpu if train.batch_gpu is not None else batch // gpus
    if (batch // gpus) % batch_gpu:
        divisors = [d for d in range(1, batch // gpus + 1) if (batch // gpus) % d == 0]
        raise ConfigError(
            f"train.batch_gpu {batch_gpu} does not divide the {batch // gpus} images per process (train.batch "
            f"{batch} over {gpus}); set train.batch_gpu to one of {', '.join(map(str, divisors))} (gradients are "
            "accumulated over the rounds)"
        )
    base = 32768 if resolution >= 512 else 16384
    lr = 0.002 if resolution >= 1024 else 0.0025
    G = dataclasses.replace(cfg.G, channel_base=cfg.G.channel_base or base)
    D = dataclasses.replace(
        cfg.D,
        channel_base=cfg.D.channel_base or base,
        mbstd_group_size=cfg.D.mbstd_group_size if cfg.D.mbstd_group_size is not None else min(batch_gpu, 4),
    )
    loss = dataclasses.replace(
        cfg.loss, r1_gamma=cfg.loss.r1_gamma if cfg.loss.r1_gamma is not None else 0.0002 * resolution**2 / batch
    )
    optim = dataclasses.replace(
        cfg.optim,
        g_lr=cfg.optim.g_lr if cfg.optim.g_lr is not None else lr,
        d_lr=cfg.optim.d_lr if cfg.optim.d_lr is not None else lr,
    )
    train = dataclasses.replace(
        train,
        batch=batch,
        batch_gpu=batch_gpu,
        ema_kimg=train.ema_kimg if train.ema_kimg is not None else batch * 10 / 32,
    )
    return dataclasses.replace(cfg, gpus=gpus, G=G, D=D, loss=loss, optim=optim, train=train)
