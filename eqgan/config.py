"""EqGAN-SA config: the StyleGAN2-ADA schema plus an ``eqgan`` section (official ``train.py`` flags, spec §2.5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import ConfigError, config_row, config_rows
from common.stylegan2.config import StyleGAN2Config

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class SpatialAwarenessConfig:
    """The paper's ablation rows are two flags: baseline (both off), + SEL (``use_sel``), + L_align (both on)."""

    use_sel: bool = True  # official --use_sel (default False there; the README command sets True)
    align_loss: bool = True  # official --align_loss (default False there; the README command sets True)
    align_thres: float = 0.25  # hard-pixel threshold of L_align (hard-coded officially)
    level_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # lambda of b8, b16, b32
    # the aligned levels (official: all three, D outputs 4x4 / 8x8 / 16x16); a 16 px D has no 16x16 output, so the
    # 16 px limited-data testbed row aligns [b8, b16] (G still draws and encodes all three heatmaps)
    levels: list[str] = field(default_factory=lambda: ["b8", "b16", "b32"])

    def __post_init__(self) -> None:
        if not self.levels or not set(self.levels) <= {"b8", "b16", "b32"}:
            raise ConfigError(f"eqgan.levels must be a non-empty subset of [b8, b16, b32], got {self.levels}")
        if len(self.level_weights) != 3:
            raise ConfigError(f"eqgan.level_weights needs 3 values (levels b8, b16, b32), got {self.level_weights}")
        if not 0 <= self.align_thres < 1:
            raise ConfigError(f"eqgan.align_thres is an L1 error of maps in [0, 1]: give 0 <= t < 1, got "
                              f"{self.align_thres}")


@dataclass
class EqGANConfig(StyleGAN2Config):
    """One EqGAN-SA run: every StyleGAN2-ADA field (see common/stylegan2/config.py) plus ``eqgan``."""

    eqgan: SpatialAwarenessConfig = field(default_factory=SpatialAwarenessConfig)


def config_path(name: str) -> Path:
    """``eqgan/configs/<name>.yaml`` for a table-row name (``lsun_cat``), or ``name`` itself when it is a file."""
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    """The config rows shipped with the package."""
    return config_rows(CONFIG_DIR)
