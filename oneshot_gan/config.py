"""GenDA config: the StyleGAN2-ADA schema plus a ``genda`` section (spec oneshot_gan.md §6; no official code).

Every value the paper does not state is marked *unverified* here and in ``README.md``: there is no code to check it
against (genforce/genda#4, "NO CODE").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import ConfigError, config_row, config_rows
from common.stylegan2.config import StyleGAN2Config

CONFIG_DIR = Path(__file__).with_name("configs")
METHODS = ("genda", "finetune", "freezed", "ewc")


@dataclass
class OneShotConfig:
    """One-shot adaptation of a pretrained StyleGAN2 to ``target`` (spec §2, §3): GenDA or a baseline.

    ``method``: ``genda`` (frozen G and D backbone; attribute adaptor + attribute classifier trained), ``finetune``
    (TGAN, Wang et al. 2018: all of G and D), ``freezed`` (FreezeD, Mo et al. 2020: ``D.freeze_layers`` first D
    layers frozen, the rest and G fine-tuned), ``ewc`` (Li et al. 2020: fine-tuning plus a Fisher-weighted L2 pull of
    G's weights to the source's).
    """

    method: Literal["genda", "finetune", "freezed", "ewc"] = "genda"
    target: str | None = None  # one image (one-shot) or a folder/zip of images (few-shot); --target on the CLI
    adaptor: Literal["w", "wplus"] = "w"  # unverified form: w' = a * w + b shared by all layers, or one (a, b) per w
    psi_train: float = 0.7  # diversity constraint, unverified form: w = w_avg + psi (w - w_avg) in training only
    tune_epilogue: bool = False  # ablation: D's epilogue fc trains with the new head (spec §2.1)
    ewc_lambda: float = 5e8  # unverified (Li et al. 2020's value as recalled): weight of sum F (theta - theta_S)^2
    fisher_batches: int = 4  # EWC: batches of fakes of the source G whose squared gradients average into F

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"genda.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (math.isfinite(self.psi_train) and 0 < self.psi_train <= 1):
            raise ConfigError(f"genda.psi_train is a truncation strength in (0, 1] (1: off), got {self.psi_train}")
        if not (math.isfinite(self.ewc_lambda) and self.ewc_lambda >= 0):
            raise ConfigError(f"genda.ewc_lambda must be a finite number >= 0, got {self.ewc_lambda}")
        if self.fisher_batches < 1:
            raise ConfigError(f"genda.fisher_batches must be >= 1, got {self.fisher_batches}")


@dataclass
class GenDAConfig(StyleGAN2Config):
    """One adaptation run: every StyleGAN2-ADA field (see common/stylegan2/config.py) plus ``genda``.

    ``train.init_from`` is the source model (a project snapshot or an official StyleGAN2-ADA ``.pkl``) and is
    required; ``data`` is filled from ``genda.target`` by the train CLI (``oneshot_gan/target.py``).
    """

    genda: OneShotConfig = field(default_factory=OneShotConfig)

    def __post_init__(self) -> None:
        frozen = self.D.freeze_layers
        if self.genda.method == "freezed" and frozen <= 0:
            raise ConfigError("genda.method freezed needs D.freeze_layers > 0 (the first D layers kept frozen, "
                              "official --freezed), e.g. --set D.freeze_layers=10")
        if self.genda.method in ("finetune", "ewc") and frozen:
            raise ConfigError(f"genda.method {self.genda.method} trains all of D, but D.freeze_layers is {frozen}: "
                              "use genda.method=freezed for FreezeD")


def config_path(name: str) -> Path:
    """``oneshot_gan/configs/<name>.yaml`` for a row name (``ffhq_babies``), or ``name`` itself when it is a file."""
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    """The config rows shipped with the package."""
    return config_rows(CONFIG_DIR)
