"""GH-Feat's training loop (official ``training/training_loop_ghfeat.py``, spec ghfeat.md §2).

Each iteration, on one real batch x (x-flipped at random when ``data.mirror``):

1. E step: x_hat = G(E(x)) through the frozen generator (constant noise, official ``randomize_noise=False``),
   ``encoder_loss`` (pixel + perceptual + adversarial), Adam on E only;
2. D step (when ``loss.d_scale`` > 0): a fresh E forward in training mode (no gradient), ``discriminator_loss``
   (logistic + R1) on the same x, Adam on D only.

G never changes. As in the official graph, BatchNorm's moving statistics see both forward passes (its update runs
whenever E runs in training mode). One learning-rate step per iteration (``config.learning_rate``). Snapshots
(``snapshot-*.pt``) hold E, D, both optimisers, the step and the RNG; the data order and the flips follow from them,
so a resumed run equals an uninterrupted one. Under torchrun E and D are DDP-wrapped and, on GPUs, BatchNorm
becomes ``SyncBatchNorm`` (the official sync-BN over the 8 GPUs); CPU processes (gloo) normalise per process and DDP
broadcasts rank 0's moving statistics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from common import checkpoint, dist
from common.checkpoint import CheckpointError
from common.config import ConfigError, config_from_dict, to_dict
from common.data import DatasetError, ImageDataset, infinite_loader, shapes_dataset
from common.logging import Progress, ScalarLogger
from common.metrics.weights import WeightsNotFoundError, load_vgg16_imagenet
from common.report import save_image_grid
from common.stylegan2.networks import Conv2dLayer, FullyConnectedLayer
from common.stylegan2.pretrained import pretrained_source_gan
from common.stylegan2.snapshot import load_networks
from ghfeat.codes import codes_to_styles, group_dims
from ghfeat.config import TINY_SOURCE, GHFeatConfig, learning_rate
from ghfeat.encoder import GHFeatEncoder
from ghfeat.loss import DFeaturePerceptual, VGGPerceptual, discriminator_loss, encoder_loss


def generator_path(path: str | None) -> Path:
    """The generator file: ``shapes32`` is the cached tiny source GAN (trained on first use)."""
    if not path:
        raise ConfigError("no generator: set generator.path (a project snapshot, run dir or StyleGAN2-ADA .pkl, or "
                          f"{TINY_SOURCE}), e.g. --generator ffhq256.pkl")
    if path == TINY_SOURCE:
        return pretrained_source_gan()
    if not Path(path).exists():
        raise ConfigError(f"generator '{path}' does not exist; give a project snapshot, a run dir or an official "
                          f"StyleGAN2-ADA .pkl (or {TINY_SOURCE})")
    return Path(path)


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module]:
    """(G, D) of a pretrained unconditional StyleGAN2: G is the EMA generator (official: ``Gs``), frozen."""
    nets = load_networks(path, device)
    G = nets.G_ema if nets.G_ema is not None else nets.G
    if G.c_dim:
        raise CheckpointError(f"{path} is a conditional generator (c_dim {G.c_dim}); GH-Feat encodes an "
                              "unconditional one")
    return G.eval().requires_grad_(False), nets.D


@torch.no_grad()
def fresh_discriminator(D: nn.Module, seed: int) -> nn.Module:
    """A copy of ``D`` with the constructor's initialisation (official ``--pretrained_D``: a new ``D_basic``).

    Every equalised-lr layer redraws its weight as N(0, 1) / lr_multiplier in construction order and zeroes its
    bias (StyleGAN2's D layers are all built with bias_init 0), so the result equals a freshly constructed D under
    ``torch.manual_seed(seed)``."""
    fresh = copy.deepcopy(D).requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    for module in fresh.modules():
        if isinstance(module, (Conv2dLayer, FullyConnectedLayer)):
            lr_multiplier = 1.0
            if isinstance(module, FullyConnectedLayer):
                lr_multiplier = module.weight_gain * module.in_features**0.5
            weight = torch.randn(module.weight.shape, generator=generator) / lr_multiplier
            module.weight.copy_(weight.to(module.weight))
            if module.bias is not None:
                module.bias.zero_()
    return fresh


def build_encoder(cfg: GHFeatConfig, style_dims: dict[str, int], resolution: int) -> GHFeatEncoder:
    """The encoder of ``cfg.encoder`` with one head per code group of G's ``style_dims``."""
    e = cfg.encoder
    try:
        return GHFeatEncoder(depth=e.depth, group_dims=group_dims(style_dims), fpn_channels=e.fpn_channels,
                             resolution=resolution, filters=e.filters, units=e.units, bottleneck=e.bottleneck,
                             stem_stride=e.stem_stride, extra_channels=e.extra_channels)
    except ValueError as err:
        raise ConfigError(f"encoder: {err}") from None


def build_perceptual(cfg: GHFeatConfig, source_D: nn.Module) -> nn.Module:
    """phi of the perceptual term: VGG16 conv4_3 (official) or a frozen copy of the source D (offline)."""
    if cfg.loss.perceptual == "d_features":
        unknown = sorted(set(cfg.loss.d_levels) - set(source_D.feature_names()))
        if unknown or not cfg.loss.d_levels:
            raise ConfigError(f"loss.d_levels {cfg.loss.d_levels}: D has the levels {source_D.feature_names()}")
        return DFeaturePerceptual(copy.deepcopy(source_D), cfg.loss.d_levels)
    try:
        return VGGPerceptual(load_vgg16_imagenet(cfg.loss.vgg16_weights))
    except WeightsNotFoundError as err:
        raise ConfigError(f"{err} Offline, loss.perceptual=d_features uses the source D instead.") from None


def training_images(cfg: GHFeatConfig, resolution: int) -> ImageDataset:
    """The real images at G's resolution (``data.path``, or ``data.num_images`` offline shapes)."""
    if cfg.data.source == "shapes":
        return ImageDataset(shapes_dataset(cfg.data.num_images, resolution, cfg.data.shapes_seed))
    if not cfg.data.path:
        raise DatasetError("no training images: pass --data DATASET (a StyleGAN2-ADA zip or folder at the "
                           f"generator's {resolution} px)")
    if not Path(cfg.data.path).exists():
        raise DatasetError(f"data.path '{cfg.data.path}' does not exist; give a zip or folder of images")
    return ImageDataset(cfg.data.path, resolution=resolution)


def to_float(images: Tensor, device: torch.device) -> Tensor:
    """uint8 images -> float32 in [-1, 1] (official drange_data [0, 255] -> drange_net [-1, 1])."""
    return images.to(device).to(torch.float32) / 127.5 - 1


def random_mirror(x: Tensor) -> Tensor:
    """Each image flipped left-right with probability 1/2 (official ``mirror_augment``), from the torch RNG."""
    flip = torch.rand(len(x)) < 0.5
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def reconstruct(E: nn.Module, G: nn.Module, x: Tensor) -> Tensor:
    """x_hat = G(E(x)): E's codes as G's per-layer styles (``codes.codes_to_styles``), constant noise."""
    styles = codes_to_styles(E(x), G.synthesis.style_dims())
    return G.synthesis(None, styles=styles, noise_mode="const")


def _grid(x: Tensor, x_hat: Tensor) -> np.ndarray:
    """Official image snapshot: the test images with their reconstructions below them (uint8 NCHW)."""
    return to_uint8(torch.cat([x, x_hat]))


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] images -> uint8 NCHW numpy."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _check(cfg: GHFeatConfig) -> None:
    if cfg.train.batch % dist.get_world_size():
        raise ConfigError(f"train.batch={cfg.train.batch} is not divisible by the {dist.get_world_size()} processes")
    if cfg.train.batch // dist.get_world_size() < 2:
        raise ConfigError(f"train.batch={cfg.train.batch} gives fewer than 2 images per process; BatchNorm needs 2")


def encoder_step(E: nn.Module, G: nn.Module, D: nn.Module, perceptual: nn.Module, x: Tensor, cfg: GHFeatConfig,
                 opt_E: torch.optim.Optimizer) -> dict[str, float]:
    """Step 1 of an iteration: ``encoder_loss`` on x_hat = G(E(x)) and one Adam step of E (D and G frozen)."""
    D.requires_grad_(False)
    x_hat = reconstruct(E, G, x)
    if cfg.loss.d_scale > 0:
        fake_logits = D(x_hat, torch.zeros([len(x), 0], device=x.device))
    else:
        fake_logits = torch.zeros(len(x), 1, device=x.device)
    terms = encoder_loss(x, x_hat, fake_logits, perceptual, cfg.loss.feature_scale, cfg.loss.d_scale)
    opt_E.zero_grad(set_to_none=True)
    terms["loss"].backward()
    opt_E.step()
    return {f"E/{k}": float(dist.all_reduce_mean(v.detach())) for k, v in terms.items()}


def discriminator_step(E: nn.Module, G: nn.Module, D: nn.Module, x: Tensor, cfg: GHFeatConfig,
                       opt_D: torch.optim.Optimizer, step: int) -> dict[str, float]:
    """Step 2: a fresh reconstruction of the same reals (E in training mode, no gradient), ``discriminator_loss``
    with R1 every ``loss.r1_every`` iterations (scaled by it), one Adam step of D."""
    D.requires_grad_(True)
    with torch.no_grad():
        x_hat = reconstruct(E, G, x)
    r1_gamma = cfg.loss.r1_gamma * cfg.loss.r1_every if step % cfg.loss.r1_every == 0 else 0.0
    terms = discriminator_loss(D, x, x_hat, r1_gamma)
    opt_D.zero_grad(set_to_none=True)
    terms["loss"].backward()
    opt_D.step()
    return {f"D/{k}": float(dist.all_reduce_mean(v.detach())) for k, v in terms.items()}


@dataclass
class TrainedGHFeat:
    """What :func:`train_ghfeat` returns: this process's E and D (unwrapped), the iteration and the last scalars."""

    E: nn.Module
    D: nn.Module
    step: int
    scalars: dict[str, float]


def train_ghfeat(cfg: GHFeatConfig, run_dir: str | Path, device: torch.device | str = "cpu",
                 resume: str | Path | None = None, max_iterations: int | None = None) -> TrainedGHFeat:
    """Train E (and D) until ``train.total_kimg`` (or ``max_iterations`` more)."""
    _check(cfg)
    device, run_dir = torch.device(device), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dist.seed_all(cfg.seed)
    G, source_D = load_generator(generator_path(cfg.generator.path), device)
    resolution = G.img_resolution
    dataset = training_images(cfg, resolution)
    D = (source_D if cfg.train.pretrained_D else fresh_discriminator(source_D, cfg.seed)).requires_grad_(True)
    D.train()
    perceptual = build_perceptual(cfg, source_D).to(device)
    E = build_encoder(cfg, G.synthesis.style_dims(), resolution).to(device).train()
    if dist.is_distributed() and device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
        E = nn.SyncBatchNorm.convert_sync_batchnorm(E)
    opt_E = torch.optim.Adam(E.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.optim.d_lr or cfg.optim.lr, betas=cfg.optim.betas,
                             eps=cfg.optim.eps)
    manager = checkpoint.CheckpointManager(run_dir, keep_last=cfg.train.keep_snapshots)
    step = 0
    if resume is not None:
        path = checkpoint.resolve_resume(resume)
        ckpt = checkpoint.load_checkpoint(path, map_location=device)
        step, _ = checkpoint.restore(ckpt, {"E": E, "D": D}, {"opt_E": opt_E, "opt_D": opt_D}, source=str(path))
        dist.print0(f"resumed from {path} at iteration {step}")
    E_ddp, D_ddp = dist.wrap_ddp(E, device), dist.wrap_ddp(D, device)
    per_rank = cfg.train.batch // dist.get_world_size()
    loader = infinite_loader(dataset, per_rank, dist.get_rank(), dist.get_world_size(), cfg.seed,
                             start=step * per_rank, num_workers=cfg.data.workers, pin_memory=device.type == "cuda")
    fixed = to_float(torch.from_numpy(np.stack([dataset[i][0] for i in range(min(8, len(dataset)))])), device)
    total = cfg.train.iterations()
    stop = total if max_iterations is None else min(total, step + max_iterations)
    image_every, snapshot_every = cfg.train.every(cfg.train.image_kimg), cfg.train.every(cfg.train.snapshot_kimg)
    logger = ScalarLogger(run_dir) if dist.is_main() else None
    scalars: dict[str, float] = {}
    with Progress(total, desc="ghfeat", unit="it", initial=step) as progress:
        while step < stop:
            images, _ = next(loader)
            x = to_float(images, device)
            if cfg.data.mirror:
                x = random_mirror(x)
            for opt, base in ((opt_E, cfg.optim.lr), (opt_D, cfg.optim.d_lr or cfg.optim.lr)):
                for group in opt.param_groups:
                    group["lr"] = learning_rate(cfg.optim, step, total, base)
            # DDP syncs what each step updates: E's gradients in the E step (D is a fixed function there), D's in the
            # D step (E's fresh forward has no gradient; SyncBatchNorm still syncs its statistics)
            scalars = encoder_step(E_ddp, G, D, perceptual, x, cfg, opt_E)
            if cfg.loss.d_scale > 0:
                scalars.update(discriminator_step(E, G, D_ddp, x, cfg, opt_D, step))
            step += 1
            progress.update(1, loss=scalars["E/loss"])
            if logger is not None and (step % cfg.train.log_every == 0 or step == stop):
                logger.log(step, lr=opt_E.param_groups[0]["lr"], kimg=step * cfg.train.batch / 1000, **scalars)
            if step % image_every == 0 or step == stop:
                with torch.no_grad():
                    E.eval()
                    grid = _grid(fixed, reconstruct(E, G, fixed))
                    E.train()
                if dist.is_main():
                    save_image_grid(run_dir / f"reconstructions-{step:09d}.png", grid, columns=len(fixed),
                                    scale=max(1, 128 // resolution), spacing=1)
            if step % snapshot_every == 0 or step == stop:
                manager.save(checkpoint.capture(step, {"E": E, "D": D}, {"opt_E": opt_E, "opt_D": opt_D},
                                                config=to_dict(cfg)))
    if logger is not None:
        logger.close()
    return TrainedGHFeat(E, D, step, scalars)


def load_encoder(path: str | Path, device: torch.device | str = "cpu") -> tuple[GHFeatEncoder, nn.Module, GHFeatConfig]:
    """(E in eval mode, frozen G, config) of a GH-Feat run dir or snapshot."""
    snapshot = checkpoint.resolve_resume(path)
    ckpt = checkpoint.load_checkpoint(snapshot, map_location="cpu")
    if ckpt.get("config") is None or "E" not in ckpt["modules"]:
        raise CheckpointError(f"{snapshot} is not a GH-Feat snapshot (no config or encoder 'E')")
    cfg = config_from_dict(GHFeatConfig, ckpt["config"], source=str(snapshot))
    G, _ = load_generator(generator_path(cfg.generator.path), device)
    E = build_encoder(cfg, G.synthesis.style_dims(), G.img_resolution)
    checkpoint.load_module_state(E, checkpoint.saved_module(ckpt, "E", str(snapshot)), "E", str(snapshot))
    return E.to(device).eval().requires_grad_(False), G, cfg
