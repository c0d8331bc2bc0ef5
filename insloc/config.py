"""InsLoc pretraining config (spec insloc.md §2.5, §6; official configs/FPN/insloc_fpn_200ep.py). ``method``
``insloc`` or the ``moco`` v2 baseline on the same loop and images."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import ConfigError, config_row, config_rows

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class ModelConfig:
    """InsLocFPN sizes (official: FPN 256, RoI 7x7, 4 head convs, fc 1,024, 128-d) and the pretext's MoCo values.
    ``neck: c4``: the C4 variant (:class:`insloc.model.InsLocC4`: RoI ``roi_size`` on res4, res5 as the RoI head,
    fc ``fc``; ``fpn_channels`` and ``head_convs`` unused; one level, so one ``box_aug_levels`` entry)."""

    neck: Literal["fpn", "c4"] = "fpn"
    block: Literal["bottleneck", "basic"] = "bottleneck"  # ResNet-50: bottleneck, (3, 4, 6, 3), width 64
    layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    width: int = 64
    stem_pool: bool = True  # torchvision's stem max pooling (False: strides 2-16, the tiny preset's small images)
    fpn_channels: int = 256
    roi_size: int = 7
    head_convs: int = 4
    fc: int = 1024
    dim: int = 128
    queue_size: int = 65536
    temperature: float = 0.2
    momentum: float = 0.999
    box_aug_levels: list[bool] = field(default_factory=lambda: [False, False, False, True])
    anchor_stride: int = 16
    anchor_scales: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0])
    anchor_ratios: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0])
    shuffle_chunks: int = 1  # one process: keys through BN in this many shuffled sub-batches

    def __post_init__(self) -> None:
        levels = 1 if self.neck == "c4" else 4
        if len(self.box_aug_levels) != levels:
            raise ConfigError(f"model.box_aug_levels has {len(self.box_aug_levels)} entries; neck {self.neck} pools "
                              f"{levels} level(s): give {levels}")


@dataclass
class DataConfig:
    """``path``: the official list file (``train.txt``, with ``root``) or a folder / zip of images; ``synthetic``
    (the tiny preset): ``synthetic_count`` procedural object images of ``synthetic_size`` px made in memory."""

    path: str = ""
    synthetic: bool = False
    synthetic_count: int = 500
    synthetic_size: int = 64
    root: str = ""
    workers: int = 4
    base_scale: int = 256
    fore_scale: list[int] = field(default_factory=lambda: [128, 255])
    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [0.5, 2.0])
    moco_size: int = 224
    colour_strength: float = 1.0  # scales MoCo v2's colour jitter and grayscale (1: official; the tiny sweep picks)

    def __post_init__(self) -> None:
        if not 0 <= self.colour_strength <= 1:
            raise ConfigError(f"data.colour_strength must be in [0, 1] (1: the official augmentation), got "
                              f"{self.colour_strength}")


@dataclass
class OptimConfig:
    """SGD 0.03 for 256 images (linear scaling), momentum 0.9, nesterov, wd 1e-4 on every parameter, cosine per
    epoch to 0, no warm-up (mmcv ``CosineAnealing`` by epoch)."""

    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0) or self.warmup_epochs < 0:
            raise ConfigError(f"optim.lr must be > 0 and optim.warmup_epochs >= 0, got {self.lr}, {self.warmup_epochs}")


@dataclass
class TrainConfig:
    batch: int = 256  # all processes (official 8 x 32)
    epochs: int = 200
    snapshot_every: int = 5000  # iterations
    log_every: int = 50
    keep_snapshots: int = 3

    def __post_init__(self) -> None:
        for key in ("batch", "epochs", "snapshot_every", "log_every", "keep_snapshots"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class InsLocConfig:
    seed: int = 0
    method: Literal["insloc", "moco"] = "insloc"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def config_path(name: str) -> Path:
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    return config_rows(CONFIG_DIR)
