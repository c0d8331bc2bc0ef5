"""Config schema of es_ddpm: guided-diffusion's model/diffusion flags, training, the prior and ES sampling (spec §6).

Model and diffusion keys keep guided-diffusion's flag names (``script_util.model_and_diffusion_defaults``) so a
paper row reads like the official command line. Defaults are guided-diffusion's; ``configs/*.yaml`` set the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from common.config import ConfigError
from es_ddpm.diffusion import GaussianDiffusion, named_betas
from es_ddpm.unet import EncoderUNetModel, UNetModel

CONFIG_DIR = Path(__file__).with_name("configs")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class ModelConfig:
    """ADM UNet flags (guided-diffusion names); ``in_channels``, ``norm_groups`` and ``precision`` are ours."""

    image_size: int = 64
    in_channels: int = 3  # official: always 3
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: str = ""  # '' = auto from image_size (64/128/256/512 only)
    attention_resolutions: str = "16,8"
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    dropout: float = 0.0
    learn_sigma: bool = False
    class_cond: bool = False
    num_classes: int = 1000
    norm_groups: int = 32  # official: 32 everywhere
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"  # official: use_fp16


@dataclass
class DiffusionConfig:
    diffusion_steps: int = 1000
    noise_schedule: Literal["linear", "cosine"] = "linear"
    sigma_small: bool = False  # fixed variance without learn_sigma: β̃_t (small) instead of β_t (large)


@dataclass
class ClassifierConfig:
    """ADM noisy classifier for class-conditional guidance (ImageNet-64 row); unused when ``checkpoint`` is null."""

    checkpoint: str | None = None
    scale: float = 1.0
    width: int = 128
    depth: int = 4
    attention_resolutions: str = "32,16,8"


@dataclass
class DataConfig:
    """Training/reference images: a StyleGAN2-ADA folder/zip (``path``) or offline ``digits``/``shapes``."""

    source: Literal["path", "digits", "shapes"] = "path"
    path: str | None = None
    resolution: int | None = None
    num_images: int = 2000  # 'shapes' only
    holdout: int = 0  # images kept out of training (seeded split) as the FD reference of tiny presets


@dataclass
class TrainConfig:
    """guided-diffusion's trainer (AdamW, constant lr, EMA 0.9999, uniform t) + ES-DDPM's truncated t (spec §2.3)."""

    batch: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_rate: float = 0.9999
    iterations: int = 500_000
    warmup_steps: int = 0  # ours; official: none
    lr_anneal_steps: int = 0  # official: linear decay to 0 over this many steps, 0 = constant
    max_timestep: int | None = None  # T': t ~ U{0..T'-1}; null = the full-length DDPM (official)
    log_every: int = 10
    snapshot_every: int = 10_000
    keep_snapshots: int = 3


@dataclass
class PriorConfig:
    """The one-shot generator p(x_0) that ES-DDPM diffuses to T' (spec §4): its samples or the network."""

    type: Literal["noise", "npz", "folder", "vae", "dcgan", "stylegan2"] = "noise"
    path: str | None = None  # npz file, image folder, VAE or DCGAN snapshot, or StyleGAN2 snapshot/.pkl


@dataclass
class SampleConfig:
    """ES-DDPM sampling (official ``reverse_steps`` = steps below ``t_prime`` of ``chain``)."""

    checkpoint: str | None = None  # our snapshot (EMA weights) or an official guided-diffusion .pt
    prior: PriorConfig = field(default_factory=PriorConfig)
    t_prime: int | None = 100  # null: start from scratch (pure noise, whole chain)
    chain: str = "1000"  # official timestep_respacing / chain_length: '250', 'ddim200', ...
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    eta: float = 0.0
    clip_denoised: bool = True
    num_samples: int = 50_000  # noise/vae/stylegan2 priors; npz/folder priors give one sample per image
    batch: int = 32
    save_png: bool = False


@dataclass
class VAEConfig:
    """Gaussian-decoder VAE prior (spec §2.2): decoder variance σ² = (1-ᾱ_{T'})/ᾱ_{T'} at ``t_prime``."""

    z_dim: int = 16
    channels: int = 32
    t_prime: int = 100
    decoder_variance: float | None = None  # null: the ES-DDPM bound at t_prime
    batch: int = 128
    lr: float = 1e-3
    iterations: int = 1500


@dataclass
class GANConfig:
    """Small DCGAN prior (``es_ddpm.gan``, used by the tiny preset)."""

    z_dim: int = 32
    channels: int = 64
    batch: int = 64
    lr: float = 2e-4
    iterations: int = 3000


@dataclass
class ESDDPMConfig:
    """One ES-DDPM setting: the DDPM (model, diffusion, training), its prior and the early-stopped sampler."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    gan: GANConfig = field(default_factory=GANConfig)


def config_path(name: str) -> Path:
    """``--cfg tiny`` -> ``es_ddpm/configs/tiny.yaml``; other values are file paths."""
    candidate = CONFIG_DIR / f"{name}.yaml"
    return candidate if not name.endswith(".yaml") and candidate.is_file() else Path(name)


def build_unet(cfg: ModelConfig) -> UNetModel:
    """guided-diffusion ``create_model``: out channels 2·in with learn_sigma, classes with class_cond."""
    try:
        return UNetModel(
            image_size=cfg.image_size,
            in_channels=cfg.in_channels,
            model_channels=cfg.num_channels,
            out_channels=cfg.in_channels * (2 if cfg.learn_sigma else 1),
            num_res_blocks=cfg.num_res_blocks,
            attention_resolutions=cfg.attention_resolutions,
            dropout=cfg.dropout,
            channel_mult=cfg.channel_mult,
            num_classes=cfg.num_classes if cfg.class_cond else None,
            num_heads=cfg.num_heads,
            num_head_channels=cfg.num_head_channels,
            num_heads_upsample=cfg.num_heads_upsample,
            use_scale_shift_norm=cfg.use_scale_shift_norm,
            resblock_updown=cfg.resblock_updown,
            use_new_attention_order=cfg.use_new_attention_order,
            norm_groups=cfg.norm_groups,
            dtype=_DTYPES[cfg.precision],
        )
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None


def build_classifier(cfg: ClassifierConfig, image_size: int, in_channels: int = 3) -> EncoderUNetModel:
    """guided-diffusion ``create_classifier`` (attention pooling, 1000 classes, scale-shift norm, resblock up/down)."""
    return EncoderUNetModel(image_size, in_channels, cfg.width, 1000, cfg.depth, cfg.attention_resolutions)


def base_betas(cfg: DiffusionConfig) -> np.ndarray:
    return named_betas(cfg.noise_schedule, cfg.diffusion_steps)


def build_diffusion(cfg: DiffusionConfig, learn_sigma: bool, chain: str | None = None) -> GaussianDiffusion:
    """The base process (``chain=None``) or its respacing; variance learned-range / fixed large / fixed small."""
    variance = "learned_range" if learn_sigma else ("fixed_small" if cfg.sigma_small else "fixed_large")
    betas = base_betas(cfg)
    try:
        if chain is None:
            return GaussianDiffusion(betas, variance)
        return GaussianDiffusion.respaced(betas, chain, variance)
    except ValueError as err:
        raise ConfigError(f"sample.chain: {err}") from None
