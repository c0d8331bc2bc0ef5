"""A small DCGAN prior (Radford et al. 2016) for the tiny preset: a one-shot generator with GAN-style, local errors.

The paper's own results refine GAN samples (StyleGAN, BigGAN; spec §4); justification: diffusing the data and the
generator distribution with the same kernel q(x_{T'}|x_0) can only shrink their divergence (spec §2.2). Training:
non-saturating logistic loss, Adam (2e-4, β = (0.5, 0.999)), as the spec's calibration plan (§8.2) proposes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import checkpoint, dist
from common.config import to_dict
from common.logging import Progress, ScalarLogger
from es_ddpm.config import ESDDPMConfig
from es_ddpm.data import dataset_tensor, load_training_data, to_model_range


class DCGenerator(nn.Module):
    """z (N, z_dim) -> (N, C, R, R) in [-1, 1]: linear to R/4 x R/4, two ×2 transposed convs with BatchNorm."""

    def __init__(self, resolution: int, channels: int, z_dim: int, width: int) -> None:
        super().__init__()
        self.z_dim, self.side, self.width = z_dim, resolution // 4, width
        flat = 2 * width * self.side**2
        self.project = nn.Sequential(nn.Linear(z_dim, flat), nn.BatchNorm1d(flat), nn.ReLU())
        self.body = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.project(z).reshape(len(z), 2 * self.width, self.side, self.side))

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """G(z), z ~ N(0, I), in eval mode (BatchNorm running statistics)."""
        return self(torch.randn(num, self.z_dim, generator=generator).to(device))


class DCDiscriminator(nn.Module):
    """(N, C, R, R) -> logits (N,): two stride-2 convs with LeakyReLU, then a linear layer."""

    def __init__(self, resolution: int, channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * (resolution // 4) ** 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


def build_generator(cfg: ESDDPMConfig) -> DCGenerator:
    return DCGenerator(cfg.model.image_size, cfg.model.in_channels, cfg.gan.z_dim, cfg.gan.channels)


def train_gan(cfg: ESDDPMConfig, run_dir: str | Path, device: torch.device | str = "cpu") -> dict[str, float]:
    """Alternate D and G steps of the non-saturating GAN loss; one snapshot ``gan-*.pt`` at the end."""
    device, run_dir = torch.device(device), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    images = to_model_range(dataset_tensor(load_training_data(cfg.data, "train", cfg.seed))).to(device)
    torch.manual_seed(cfg.seed)
    G = build_generator(cfg).to(device)
    D = DCDiscriminator(cfg.model.image_size, cfg.model.in_channels, cfg.gan.channels).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.gan.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.gan.lr, betas=(0.5, 0.999))
    logger = ScalarLogger(run_dir, filename="gan_stats.jsonl", tensorboard=False)
    stats: dict[str, float] = {}
    with Progress(cfg.gan.iterations, desc="dcgan", unit="it") as progress:
        for step in range(1, cfg.gan.iterations + 1):
            real = images[torch.randint(len(images), (cfg.gan.batch,), device=device)]
            fake = G(torch.randn(cfg.gan.batch, cfg.gan.z_dim, device=device))
            # D: softplus(-D(x)) + softplus(D(G(z))); G: softplus(-D(G(z))) (non-saturating)
            loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-D(fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            stats = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
            if step % 100 == 0 or step == cfg.gan.iterations:
                logger.log(step, **stats)
            progress.update(1, **stats)
    manager = checkpoint.CheckpointManager(run_dir, keep_last=1, prefix="gan")
    manager.save(checkpoint.capture(cfg.gan.iterations, {"G": G, "D": D}, {"G": opt_g, "D": opt_d},
                                    config=to_dict(cfg)))
    logger.close()
    dist.print0(f"dcgan: final D loss {stats.get('loss_d', 0):.3g}, G loss {stats.get('loss_g', 0):.3g}")
    return stats


def load_gan(path: str | Path, cfg: ESDDPMConfig, device: torch.device | str = "cpu") -> DCGenerator:
    """The trained DCGAN generator from a ``gan-*.pt`` snapshot (or the run dir holding one), in eval mode."""
    ckpt = checkpoint.load_checkpoint(checkpoint.resolve_resume(path, prefix="gan"), map_location="cpu")
    G = build_generator(cfg)
    checkpoint.load_module_state(G, checkpoint.saved_module(ckpt, "G", str(path)), "G", str(path))
    return G.eval().requires_grad_(False).to(device)
