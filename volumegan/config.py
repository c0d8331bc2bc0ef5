"""VolumeGAN config: the StyleGAN2-ADA schema (loss, optimiser, EMA, data, the renderer's and D's widths) plus a
``volumegan`` section for what the paper adds (spec volumegan.md §2, §4; official
``configs/volumegan_ffhq_config.py`` and ``scripts/training_demos/volumegan_ffhq256.sh``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import ConfigError, config_row, config_rows
from common.stylegan2.config import StyleGAN2Config
from volumegan.rendering import FFHQ_BOUNDS, RaySettings

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class VolumeGANSection:
    """The 3D part. Defaults: the official FFHQ-256 recipe (camera prior ``ps_cfg``, ``fv_cfg``, ``embed_cfg``,
    ``fg_cfg``, ``out_dim``, progressive growing from ``--g_init_res 32`` with 750k + 750k images per level)."""

    nerf_res: int = 32  # the feature map's resolution (official --g_init_res)
    feature_volume: bool = True  # false: the no-volume ablation (the MLP sees positions only)
    volume_res: int = 32
    volume_init_res: int = 4
    volume_base_channels: int = 256
    volume_channels: int = 32  # a floor: the last stage has max(base / 2^(stages - 1), this) channels
    bounds: list[list[float]] = field(default_factory=lambda: [list(b) for b in FFHQ_BOUNDS])
    pe_freqs: int = 10
    mlp_layers: int = 4
    mlp_hidden: int = 256
    feature_dim: int = 512  # must equal the renderer's input width min(G.channel_base / nerf_res, G.channel_max)
    # the camera prior and the coarse samples (as many importance samples follow)
    fov: float = 12.0
    ray_start: float = 0.8
    ray_end: float = 1.2
    num_steps: int = 12
    radius: float = 1.0
    yaw_mean: float = math.pi / 2
    yaw_std: float = 0.3
    pitch_mean: float = math.pi / 2
    pitch_std: float = 0.155
    camera: Literal["gaussian", "uniform"] = "gaussian"
    # progressive growing (official ProgressScheduler; the demo script turns it on)
    progressive: bool = True
    lod_training_kimg: float = 750.0
    lod_transition_kimg: float = 750.0
    lod_interval: int = 4  # iterations between lod updates (official minibatch_repeats)
    reset_optimizer: bool = True  # Adam state cleared when a fade starts or ends

    def __post_init__(self) -> None:
        for key in ("nerf_res", "volume_res", "volume_init_res", "num_steps", "mlp_layers", "lod_interval"):
            if getattr(self, key) < 1:
                raise ConfigError(f"volumegan.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_steps < 3:
            raise ConfigError(f"volumegan.num_steps must be >= 3 (importance sampling uses the inner mid-points), "
                              f"got {self.num_steps}")
        if not 0 < self.ray_start < self.ray_end:
            raise ConfigError(f"volumegan.ray_start and ray_end must satisfy 0 < start < end, got "
                              f"{self.ray_start}, {self.ray_end}")
        if len(self.bounds) != 2 or any(len(b) != 3 for b in self.bounds) or \
                any(lo >= hi for lo, hi in zip(*self.bounds)):
            raise ConfigError(f"volumegan.bounds is [[min x, min y, min z], [max x, max y, max z]] with min < max, "
                              f"got {self.bounds}")

    def rays(self) -> RaySettings:
        return RaySettings(self.fov, self.ray_start, self.ray_end, self.num_steps, self.radius, self.yaw_mean,
                           self.yaw_std, self.pitch_mean, self.pitch_std, self.camera)


@dataclass
class VolumeGANConfig(StyleGAN2Config):
    """One VolumeGAN run: every StyleGAN2-ADA field (common/stylegan2/config.py) plus ``volumegan``."""

    volumegan: VolumeGANSection = field(default_factory=VolumeGANSection)

    def __post_init__(self) -> None:
        check_sizes(self, self.data.resolution)


def check_sizes(cfg: VolumeGANConfig, resolution: int | None) -> None:
    """One line for an image resolution the renderer cannot reach from ``nerf_res`` or features of another width
    than the renderer's input (checked as soon as the values are known: the resolution may come from the data)."""
    vg, g = cfg.volumegan, cfg.G
    if resolution is not None:
        blocks = math.log2(resolution / vg.nerf_res)
        if blocks < 0 or blocks != int(blocks):
            raise ConfigError(f"the images are {resolution} px: volumegan.nerf_res ({vg.nerf_res}) must be the image "
                              "resolution divided by a power of two")
    if g.channel_base is not None and vg.feature_dim != min(g.channel_base // vg.nerf_res, g.channel_max):
        raise ConfigError(f"volumegan.feature_dim ({vg.feature_dim}) must equal the renderer's input width "
                          f"min(G.channel_base / nerf_res, G.channel_max) = "
                          f"{min(g.channel_base // vg.nerf_res, g.channel_max)}")


def config_path(name: str) -> Path:
    """``volumegan/configs/<name>.yaml`` for a table-row name (``ffhq256``), or ``name`` itself when a file."""
    return config_row(CONFIG_DIR, name)


def config_names() -> list[str]:
    return config_rows(CONFIG_DIR)
