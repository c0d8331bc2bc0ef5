"""InsGen config: the StyleGAN2-ADA schema plus an ``insgen`` section (defaults from the official ``train.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import config_row, config_rows
from common.stylegan2.config import StyleGAN2Config

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class ContrastiveConfig:
    """InsGen instance discrimination (paper Sec. 3; defaults from genforce/insgen ``train.py``, spec §2)."""

    enabled: bool = True  # false: plain StyleGAN2-ADA with the same seed and data (official --no_insgen=1)
    temperature: float = 0.2
    momentum: float = 0.999  # momentum heads and D_ema (official: one value, DHead_kwargs.momentum)
    real_queue_size: int | None = None  # official --rqs; None: int(0.05 * N) * (2 with mirror)
    fake_queue_size: int | None = None  # official --fqs; same default
    weight_real: float = 1.0  # C_D^r
    weight_fake: float = 1.0  # C_D^f
    weight_fake_on_g: float = 0.1  # C_G^f
    no_cl_on_g: bool = False  # official --no_cl_on_g: drop C_G^f
    latent_perturbation: float = 0.15  # sigma_z of the positive fake view (hard-coded officially)
    ada_linear: bool = False  # official --ada_linear: p = augment.target * cur_kimg / total_kimg
    view_pipe: str | None = None  # None: views from the adversarial augment pipe (official); else a fixed pipe
    view_p: float = 0.0  # p of view_pipe


@dataclass
class InsGenConfig(StyleGAN2Config):
    """One InsGen run: every StyleGAN2-ADA field (see common/stylegan2/config.py) plus ``insgen``."""

    insgen: ContrastiveConfig = field(default_factory=ContrastiveConfig)


def config_path(name: str) -> Path:
    """``insgen/configs/<name>.yaml`` for a table-row name (``ffhq2k``), or ``name`` itself when it is a file."""
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    """The config rows shipped with the package."""
    return config_rows(CONFIG_DIR)
