"""The Gaussian-decoder VAE prior of ES-DDPM (spec §2.2).

The ES-DDPM bound splits into the truncated DDPM objective and a VAE on clean images whose decoder is
N(x_0; f_φ(z), σ² I) with σ² = (1 - ᾱ_{T'})/ᾱ_{T'}: then KL(q(x_{T'}|x_0) ‖ p_φ(x_{T'}|z)) = ᾱ_{T'}/(2(1-ᾱ_{T'}))
‖x_0 - f_φ(z)‖² = ‖x_0 - f_φ(z)‖²/(2σ²). Sampling the prior is x = f_φ(z), z ~ N(0, I); ES-DDPM then diffuses it
to T'. Networks are small strided-conv encoder/decoder pairs (tanh output in [-1, 1]).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from common import checkpoint, dist
from common.config import to_dict
from common.logging import Progress, ScalarLogger
from es_ddpm.config import ESDDPMConfig, VAEConfig, base_betas
from es_ddpm.data import dataset_tensor, load_training_data, to_model_range


def decoder_variance(cfg: VAEConfig, alphas_cumprod: Tensor | list[float]) -> float:
    """σ² of the decoder: the configured value, or (1 - ᾱ_{T'})/ᾱ_{T'} at ``cfg.t_prime`` (ES-DDPM bound)."""
    if cfg.decoder_variance is not None:
        return cfg.decoder_variance
    abar = float(alphas_cumprod[cfg.t_prime - 1])
    return (1.0 - abar) / abar


class VAE(nn.Module):
    """(N, C, R, R) <-> z (N, z_dim); R divisible by 4."""

    def __init__(self, resolution: int, channels: int, z_dim: int, width: int) -> None:
        super().__init__()
        self.z_dim, self.side = z_dim, resolution // 4
        flat = 2 * width * self.side**2
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.SiLU(), nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(flat, 2 * z_dim),
        )
        self.decoder_in = nn.Linear(z_dim, flat)
        self.decoder = nn.Sequential(
            nn.SiLU(), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh(),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q_ψ(z | x_0)."""
        return self.encoder(x).chunk(2, dim=1)

    def decode(self, z: Tensor) -> Tensor:
        """f_φ(z) in [-1, 1]."""
        return self.decoder(self.decoder_in(z).reshape(len(z), -1, self.side, self.side))

    def loss(self, x: Tensor, sigma2: float) -> tuple[Tensor, Tensor, Tensor]:
        """Negative ELBO per image (nats, up to the constant): ‖x - f(z)‖²/(2σ²) + KL(q(z|x) ‖ N(0, I)).

        Returns (loss, reconstruction term, KL), each averaged over the batch.
        """
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        rec = ((x - self.decode(z)) ** 2).flatten(1).sum(1) / (2 * sigma2)
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)
        return (rec + kl).mean(), rec.mean(), kl.mean()

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """x = f_φ(z), z ~ N(0, I): (num, C, R, R) in [-1, 1]."""
        z = torch.randn(num, self.z_dim, generator=generator).to(device)
        return self.decode(z)


def build_vae(cfg: ESDDPMConfig) -> VAE:
    return VAE(cfg.model.image_size, cfg.model.in_channels, cfg.vae.z_dim, cfg.vae.channels)


def train_vae(cfg: ESDDPMConfig, run_dir: str | Path, device: torch.device | str = "cpu",
              resume: str | Path | None = None) -> dict[str, float]:
    """Adam on the negative ELBO over the training images; one snapshot at the end (``vae-*.pt``, module 'vae')."""
    device = torch.device(device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_training_data(cfg.data, "train", cfg.seed)
    images = to_model_range(dataset_tensor(dataset)).to(device)
    abar = torch.from_numpy(base_betas(cfg.diffusion)).neg().add(1).cumprod(0)
    sigma2 = decoder_variance(cfg.vae, abar)
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae.lr)
    manager = checkpoint.CheckpointManager(run_dir, keep_last=1, prefix="vae")
    step = 0
    if resume is not None:
        ckpt = checkpoint.load_checkpoint(checkpoint.resolve_resume(resume, prefix="vae"), map_location=device)
        step, _ = checkpoint.restore(ckpt, {"vae": vae}, {"opt": opt}, source=str(resume))
    logger = ScalarLogger(run_dir, filename="vae_stats.jsonl", tensorboard=False)
    generator = torch.Generator().manual_seed(cfg.seed + step)
    stats = {}
    with Progress(cfg.vae.iterations, desc="vae", unit="it", initial=step) as progress:
        while step < cfg.vae.iterations:
            idx = torch.randint(len(images), (cfg.vae.batch,), generator=generator).to(device)
            loss, rec, kl = vae.loss(images[idx], sigma2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            stats = {"loss": loss.item(), "rec": rec.item(), "kl": kl.item(), "sigma2": sigma2}
            if step % 100 == 0 or step == cfg.vae.iterations:
                logger.log(step, **stats)
            progress.update(1, loss=stats["loss"])
    manager.save(checkpoint.capture(step, {"vae": vae}, {"opt": opt}, config=to_dict(cfg)))
    logger.close()
    dist.print0(f"vae: sigma^2 = {sigma2:.4g} (sigma {math.sqrt(sigma2):.3f}), final loss {stats.get('loss', 0):.4g}")
    return stats


def load_vae(path: str | Path, cfg: ESDDPMConfig, device: torch.device | str = "cpu") -> VAE:
    """A trained VAE from a ``vae-*.pt`` snapshot (or the run dir holding one)."""
    ckpt = checkpoint.load_checkpoint(checkpoint.resolve_resume(path, prefix="vae"), map_location="cpu")
    vae = build_vae(cfg)
    checkpoint.load_module_state(vae, checkpoint.saved_module(ckpt, "vae", str(path)), "vae", str(path))
    return vae.eval().requires_grad_(False).to(device)
