"""Config -> networks, exactly as the official ``train.py`` turns ``--cfg`` into constructor kwargs."""

from __future__ import annotations

from typing import Any

from common.stylegan2.config import StyleGAN2Config
from common.stylegan2.networks import Discriminator, Generator, SynthesisNetwork


def build_generator(cfg: StyleGAN2Config, resolution: int, img_channels: int, c_dim: int,
                    synthesis_class: type[SynthesisNetwork] | None = None, **synthesis_extra: Any) -> Generator:
    """G of a resolved config (see ``config.resolve``); ``train.fp32`` drops fp16 blocks and conv clamping.
    ``synthesis_class`` and ``synthesis_extra`` build a paper's synthesis subclass with its own arguments."""
    g = cfg.G
    return Generator(
        z_dim=g.z_dim,
        c_dim=c_dim,
        w_dim=g.w_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": g.mapping_layers},
        synthesis_kwargs={
            "channel_base": g.channel_base,
            "channel_max": g.channel_max,
            "num_fp16_res": 0 if cfg.train.fp32 else g.num_fp16_res,
            "conv_clamp": None if cfg.train.fp32 else g.conv_clamp,
            **synthesis_extra,
        },
        synthesis_class=synthesis_class,
    )


def build_discriminator(cfg: StyleGAN2Config, resolution: int, img_channels: int, c_dim: int) -> Discriminator:
    """D of a resolved config; its label mapping network has ``D.mapping_layers`` layers (official default 8)."""
    d = cfg.D
    return Discriminator(
        c_dim=c_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        architecture=d.architecture,
        channel_base=d.channel_base,
        channel_max=d.channel_max,
        num_fp16_res=0 if cfg.train.fp32 else d.num_fp16_res,
        conv_clamp=None if cfg.train.fp32 else d.conv_clamp,
        block_kwargs={"freeze_layers": d.freeze_layers},
        mapping_kwargs={"num_layers": d.mapping_layers},
        epilogue_kwargs={"mbstd_group_size": d.mbstd_group_size, "mbstd_num_channels": d.mbstd_num_channels},
    )
