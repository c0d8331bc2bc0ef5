"""DynamicD config: the StyleGAN2-ADA schema plus a ``dynamicd`` section (the four official ``train.py`` flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import ConfigError, config_row, config_rows
from common.stylegan2.config import StyleGAN2Config

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class DynamicWidthConfig:
    """D's width schedule (spec dynamicd.md §2.3-2.4). Off unless both ratios are > 0, as the official code.

    Increasing (sufficient data): ``occupy_start: 0.5, occupy_end: 1.0``. Decreasing (limited data):
    ``occupy_start: 1.0, occupy_end: 0.5, randomly_select: true, keepd: 9`` (at 256 px).
    """

    occupy_start: float = -1.0  # width ratio at kimg 0 (official --occupy_start)
    occupy_end: float = -1.0  # width ratio at train.total_kimg (official --occupy_end)
    randomly_select: bool = False  # random channel subsets re-drawn per forward call, else the first channels
    keepd: int = -1  # D layers with Freeze-D index < keepd stay full width (official --keepd)
    interval: int = 4  # iterations between ratio updates (official: ada_interval = 4, even with ADA off)
    restart_on_resume: bool = False  # true: the official behaviour, the schedule starts again at --resume

    @property
    def enabled(self) -> bool:
        return self.occupy_start > 0 and self.occupy_end > 0

    def __post_init__(self) -> None:
        if self.enabled and not (self.occupy_start <= 1 and self.occupy_end <= 1):
            raise ConfigError(
                f"dynamicd.occupy_start {self.occupy_start} and occupy_end {self.occupy_end} are width ratios of the "
                "full D: both must be in (0, 1] (e.g. 0.5 -> 1.0 increasing, 1.0 -> 0.5 decreasing)"
            )
        if self.interval < 1:
            raise ConfigError(f"dynamicd.interval must be >= 1 iteration (official 4), got {self.interval}")


@dataclass
class DynamicDConfig(StyleGAN2Config):
    """One DynamicD run: every StyleGAN2-ADA field (see common/stylegan2/config.py) plus ``dynamicd``."""

    dynamicd: DynamicWidthConfig = field(default_factory=DynamicWidthConfig)

    def __post_init__(self) -> None:
        if self.dynamicd.enabled and self.D.architecture == "skip":
            raise ConfigError(
                "dynamicd masks the official resnet/orig D (genforce/dynamicd leaves a skip D's epilogue fromrgb "
                "unspecified): set D.architecture to resnet (the paper's) or orig"
            )


def config_path(name: str) -> Path:
    """``dynamicd/configs/<name>.yaml`` for a table-row name (``ffhq2k_dec``), or ``name`` itself when a file."""
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    """The config rows shipped with the package."""
    return config_rows(CONFIG_DIR)
