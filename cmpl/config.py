"""CMPL config (spec cmpl.md §2, §6.1). No official code: every value marked [recalled] or [ref-impl] in the spec is a
key here, with the spec's proposed default, and the README names them.

Frame sampling: one clip is decoded at the auxiliary's rate (``aux.clip_len`` frames ``aux.frame_interval`` apart)
and the primary sees every (``primary.frame_interval`` / ``aux.frame_interval``)-th of them, so both networks cover
the same time span with the same spatial augmentation (spec §7g).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cmpl.augment import AugmentConfig
from common.config import ConfigError, config_row, config_rows

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class NetConfig:
    """One network: SlowOnly with ``width`` stem channels (64: R50, 16: x1/4) and its frame sampling."""

    width: int = 64
    inflate: list[int] = field(default_factory=lambda: [0, 0, 1, 1])  # SlowOnly: temporal conv in res4, res5
    stage_blocks: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    stem_stride: int = 4  # official: stride-2 stem conv + stride-2 max-pool; 2 (no max-pool) or 1 for small frames
    dropout: float = 0.5
    clip_len: int = 8  # [ref-impl] 8x8x1 for the primary
    frame_interval: int = 8
    pretrained: str | None = None  # a torchvision ResNet-50 state dict, I3D-inflated (width 64 only; paper: none)


@dataclass
class SSLConfig:
    """``method``: cmpl (cross pseudo-labels both ways), cmpl_aux_to_primary (only A teaches F; A supervised only),
    fixmatch (F teaches itself; no auxiliary), supervised (labelled clips only). [recalled] tau 0.95, lambda 1;
    mu 4 [ref-impl]. ``supervised_aux``: with ``supervised``, also train A on the labelled clips (independently of
    F; the supervised-only auxiliary that CMPL's auxiliary is compared with)."""

    method: Literal["cmpl", "cmpl_aux_to_primary", "fixmatch", "supervised"] = "cmpl"
    tau: float = 0.95
    lambda_u: float = 1.0
    mu: int = 4
    supervised_aux: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.tau <= 1 or not math.isfinite(self.lambda_u) or self.lambda_u < 0 or self.mu < 1:
            raise ConfigError(f"ssl.tau must be in [0, 1], ssl.lambda_u >= 0 and ssl.mu >= 1; got {self.tau}, "
                              f"{self.lambda_u}, {self.mu}")


@dataclass
class DataConfig:
    """``source``: ``lists`` (videos or frame folders from list files) or ``synthetic`` (the tiny motion clips)."""

    source: Literal["lists", "synthetic"] = "lists"
    train_list: str | None = None
    val_list: str | None = None
    root: str = ""  # the list's paths are relative to it
    val_root: str | None = None  # the validation list's root when it differs (mmaction2 K400: videos_val); null: root
    class_index: str | None = None  # UCF-101 classInd.txt
    num_classes: int = 400
    label_fraction: float = 0.01
    split_file: str | None = None  # null: <outdir>/split.json
    split_seed: int = 0
    on_error: Literal["skip", "stop"] = "skip"
    workers: int = 4
    synthetic_train: int = 2000
    synthetic_test: int = 800
    synthetic_frames: int = 16
    synthetic_size: int = 32
    synthetic_appearance: bool = False


@dataclass
class OptimConfig:
    """SGD [ref-impl]: momentum 0.9, wd 1e-4, lr 0.2 for a global batch of 8 x 8 labelled clips, cosine with linear
    warm-up, gradient-norm clip 40."""

    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    warmup_iterations: int = 0
    grad_clip: float | None = 40.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0) or self.warmup_iterations < 0:
            raise ConfigError(f"optim.lr must be a finite number > 0 and optim.warmup_iterations >= 0, got "
                              f"{self.lr} and {self.warmup_iterations}")


@dataclass
class TrainConfig:
    batch: int = 64  # labelled clips per iteration (all processes); unlabelled: mu x batch
    iterations: int = 10000
    log_every: int = 20
    eval_every: int = 1000
    snapshot_every: int = 1000
    keep_snapshots: int = 3
    channels_last: bool = False  # channels_last_3d weights and clips (2.1x faster CMPL steps on one CPU thread, tiny)

    def __post_init__(self) -> None:
        for key in ("batch", "iterations", "log_every", "eval_every", "snapshot_every", "keep_snapshots"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class EvalConfig:
    """Test views [ref-impl convention]: ``num_clips`` x ``crops`` (1 or 3) averaged (``average`` prob / score)."""

    num_clips: int = 10
    crops: int = 3
    average: Literal["prob", "score"] = "prob"


@dataclass
class CMPLConfig:
    seed: int = 0
    primary: NetConfig = field(default_factory=NetConfig)
    aux: NetConfig = field(default_factory=lambda: NetConfig(width=16, clip_len=32, frame_interval=2))
    ssl: SSLConfig = field(default_factory=SSLConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def primary_step(self) -> int:
        """Every how many decoded (auxiliary-rate) frames the primary takes one."""
        step, rest = divmod(self.primary.frame_interval, self.aux.frame_interval)
        if rest or self.primary.clip_len * step != self.aux.clip_len:
            raise ConfigError(
                f"primary {self.primary.clip_len}x{self.primary.frame_interval} and auxiliary "
                f"{self.aux.clip_len}x{self.aux.frame_interval} must span the same frames, the primary's interval a "
                "multiple of the auxiliary's (one decoded clip serves both)")
        return step


def config_path(name: str) -> Path:
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    return config_rows(CONFIG_DIR)
