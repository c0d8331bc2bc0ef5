"""``python -m es_ddpm.train --cfg tiny [--what ddpm|vae|dcgan]``: train the DDPM (or a prior) of an ES-DDPM row.

The DDPM trainer is guided-diffusion's (spec §2.5): AdamW (lr 1e-4, no weight decay), EMA of the weights, t uniform,
loss L_simple (+ L_vlb with learned sigma). ES-DDPM's truncated mode (``train.max_timestep = T'``) draws
t ~ U{0..T'-1} only, the DDPM part of the split bound (spec §2.2-2.3). Under torchrun each process trains one
shard of the batch (DDP). Snapshots ``snapshot-*.pt`` hold model, EMA, optimizer, step and RNG; ``--resume``
continues bit for bit.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import click
import torch
from torch import nn

from common import checkpoint, dist
from common.cli import common_options, failed_start_undone, setup_run, user_errors
from common.config import ConfigError, config_rows, to_dict
from common.data import infinite_loader
from common.logging import Progress, ScalarLogger
from es_ddpm.config import CONFIG_DIR, ESDDPMConfig, build_diffusion, build_unet, config_path
from es_ddpm.data import load_training_data, to_model_range
from es_ddpm.gan import train_gan
from es_ddpm.vae import train_vae


def learning_rate(cfg: ESDDPMConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or guided-diffusion's linear anneal to 0."""
    lr = cfg.train.lr
    if cfg.train.warmup_steps and step < cfg.train.warmup_steps:
        lr *= (step + 1) / cfg.train.warmup_steps
    if cfg.train.lr_anneal_steps:
        lr *= max(0.0, 1.0 - step / cfg.train.lr_anneal_steps)
    return lr


@torch.no_grad()
def update_ema(model: nn.Module, ema: nn.Module, rate: float) -> None:
    """ema ← rate·ema + (1 - rate)·θ (guided-diffusion ``update_ema``)."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - rate)


def sample_timesteps(batch: int, num_timesteps: int, max_timestep: int | None, device: torch.device) -> torch.Tensor:
    """t ~ U{0..T-1}, or U{0..T'-1} in ES-DDPM's truncated training."""
    high = num_timesteps if max_timestep is None else max_timestep
    return torch.randint(0, high, (batch,), device=device)


def _check(cfg: ESDDPMConfig) -> None:
    t = cfg.train
    for key in ("batch", "iterations", "log_every", "snapshot_every", "keep_snapshots"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 1")
    for key in ("warmup_steps", "lr_anneal_steps"):
        if getattr(t, key) < 0:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 0")
    if not (math.isfinite(t.lr) and t.lr > 0) or not 0 <= t.ema_rate < 1 or not math.isfinite(t.weight_decay):
        raise ConfigError(f"train.lr={t.lr} must be a finite number > 0, train.ema_rate={t.ema_rate} in [0, 1) and "
                          f"train.weight_decay={t.weight_decay} finite")
    if t.max_timestep is not None and not 1 <= t.max_timestep <= cfg.diffusion.diffusion_steps:
        raise ConfigError(f"train.max_timestep={t.max_timestep} must be in 1..{cfg.diffusion.diffusion_steps} "
                          "(or null for the full-length DDPM)")
    if t.batch % dist.get_world_size():
        raise ConfigError(f"train.batch={t.batch} is not divisible by the {dist.get_world_size()} processes")
    if cfg.model.class_cond:
        raise ConfigError("class-conditional training is not implemented here (use the official 64x64 checkpoint); "
                          "set model.class_cond=false")


def check_prior(cfg: ESDDPMConfig, what: str) -> None:
    """One line for a prior section ('vae' or 'gan') whose numbers cannot train (0 iterations gave a NaN loss)."""
    section = getattr(cfg, what)
    for key in ("batch", "iterations"):
        if getattr(section, key) < 1:
            raise ConfigError(f"{what}.{key}={getattr(section, key)} must be >= 1")
    if not (math.isfinite(section.lr) and section.lr > 0):
        raise ConfigError(f"{what}.lr={section.lr} must be a finite number > 0")


def train_ddpm(cfg: ESDDPMConfig, run_dir: str | Path, device: torch.device | str = "cpu",
               resume: str | Path | None = None, max_iterations: int | None = None) -> dict[str, float]:
    """Train until ``train.iterations`` (or ``max_iterations`` more); returns the last logged scalars."""
    _check(cfg)
    device, run_dir = torch.device(device), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dist.seed_all(cfg.seed)
    dataset = load_training_data(cfg.data, "train", cfg.seed)
    if dataset.resolution != cfg.model.image_size or dataset.num_channels != cfg.model.in_channels:
        raise ConfigError(f"data are {dataset.num_channels}x{dataset.resolution}px but the model expects "
                          f"{cfg.model.in_channels}x{cfg.model.image_size}px; set model.image_size/in_channels")
    diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma)
    model = build_unet(cfg.model).to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    manager = checkpoint.CheckpointManager(run_dir, keep_last=cfg.train.keep_snapshots)
    step = 0
    if resume is not None:
        path = checkpoint.resolve_resume(resume)
        ckpt = checkpoint.load_checkpoint(path, map_location=device)
        step, _ = checkpoint.restore(ckpt, {"model": model, "ema": ema}, {"opt": opt}, source=str(path))
        dist.print0(f"resumed from {path} at step {step}")
    ddp = dist.wrap_ddp(model, device)
    per_rank = cfg.train.batch // dist.get_world_size()
    loader = infinite_loader(dataset, per_rank, dist.get_rank(), dist.get_world_size(), cfg.seed, start=step * per_rank)
    logger = ScalarLogger(run_dir)
    stop = cfg.train.iterations if max_iterations is None else min(cfg.train.iterations, step + max_iterations)
    scalars: dict[str, float] = {}
    with Progress(cfg.train.iterations, desc="ddpm", unit="it", initial=step) as progress:
        while step < stop:
            images, _ = next(loader)
            x = to_model_range(images).to(device)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            t = sample_timesteps(len(x), diffusion.num_timesteps, cfg.train.max_timestep, device)
            terms = diffusion.training_losses(ddp, x, t)
            loss = terms["loss"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            update_ema(model, ema, cfg.train.ema_rate)
            step += 1
            scalars = {k: float(dist.all_reduce_mean(v.mean().detach())) for k, v in terms.items()}
            progress.update(1, loss=scalars["loss"])
            if step % cfg.train.log_every == 0 or step == stop:
                logger.log(step, lr=opt.param_groups[0]["lr"], **scalars)
            if step % cfg.train.snapshot_every == 0 or step == stop:
                manager.save(checkpoint.capture(step, {"model": model, "ema": ema}, {"opt": opt},
                                                config=to_dict(cfg)))
    logger.close()
    return scalars


@click.command()
@common_options(rows=config_rows(CONFIG_DIR))
@click.option("--what", type=click.Choice(["ddpm", "vae", "dcgan"]), default="ddpm", show_default=True,
              help="Train the DDPM, the VAE prior or the DCGAN prior (sample.py --prior vae|dcgan).")
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, what: str) -> None:
    """Train the DDPM (full-length, or truncated at train.max_timestep = T'), the Gaussian-decoder VAE prior or the
    DCGAN prior."""
    if what == "dcgan" and resume:
        raise click.UsageError("the DCGAN prior trains in one go (one snapshot at the end): start a new run instead "
                               "of --resume")
    setup = setup_run(ESDDPMConfig, "es_ddpm", str(config_path(cfg)) if cfg else None, overrides, outdir, resume,
                      seed, device)
    with failed_start_undone(setup, remove_untrained=False), user_errors():
        if what != "ddpm":
            check_prior(setup.cfg, "gan" if what == "dcgan" else "vae")
        if what == "vae":
            stats = train_vae(setup.cfg, setup.run_dir, setup.info.device, resume=setup.resume_from)
        elif what == "dcgan":
            stats = train_gan(setup.cfg, setup.run_dir, setup.info.device)
            stats["loss"] = stats.get("loss_g", float("nan"))
        else:
            stats = train_ddpm(setup.cfg, setup.run_dir, setup.info.device, resume=setup.resume_from)
    dist.print0(f"done: {what} loss {stats.get('loss', float('nan')):.4g} in {setup.run_dir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
