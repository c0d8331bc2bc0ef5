"""``python -m ghfeat.bench [--what extract|train] [--device cuda]``: GH-Feat's two costs.

- ``extract`` (the probes run the frozen encoder over whole datasets): images/s of the encoder against torchvision's
  ResNet-50, both in eval mode with random weights (the cost does not depend on them), side by side in one process at
  the same resolution and batch. The encoder is a ResNet plus an extra stage, an FPN, the SAM and three large dense
  heads (152M parameters at depth 50 against ResNet-50's 25.6M), so expect it slower.
- ``train``: seconds per training iteration (E step + D step, ``training.encoder_step``/``discriminator_step``)
  at the tiny setting (``configs/tiny.yaml`` on the shapes32 StyleGAN2 at 32 px, batch 16) and at the paper width
  (depth-50 encoder, VGG16 perceptual term, the paper256 StyleGAN2 at 256 px; batch ``--batch``, official 12 per
  GPU); random weights, so nothing is downloaded.

Medians of ``--reps`` timed repetitions after one warm-up.
"""

from __future__ import annotations

import click
import torch
import torchvision

from common.config import load_config
from common.dist import DeviceError, resolve_device
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.threads import configure_threads
from common.timing import median_seconds
from ghfeat.config import GHFeatConfig, config_path
from ghfeat.encoder import DEPTHS, GHFeatEncoder
from ghfeat.loss import DFeaturePerceptual, VGGPerceptual
from ghfeat.training import build_encoder, discriminator_step, encoder_step


def images_per_second(net: torch.nn.Module, batch: int, resolution: int, reps: int, device: torch.device) -> float:
    """Median images/s of ``net`` on random (batch, 3, resolution, resolution) inputs, no grad."""
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    with torch.no_grad():
        return batch / median_seconds(lambda: net(x), reps, device)


def iteration_seconds(setting: str, batch: int, reps: int, device: torch.device) -> float:
    """Median seconds of one GH-Feat iteration at ``tiny`` or ``paper`` width."""
    torch.manual_seed(0)
    row, preset, resolution = ("tiny", "shapes32", 32) if setting == "tiny" else ("ffhq256", "paper256", 256)
    cfg = load_config(GHFeatConfig, config_path(row), [f"train.batch={batch}"])
    sg2 = resolve(load_config(StyleGAN2Config, preset_path(preset)), resolution, gpus=1)
    G = build_generator(sg2, resolution, 3, 0).to(device).eval().requires_grad_(False)
    D = build_discriminator(sg2, resolution, 3, 0).to(device).train()
    if cfg.loss.perceptual == "d_features":
        perceptual = DFeaturePerceptual(build_discriminator(sg2, resolution, 3, 0), cfg.loss.d_levels)
    else:
        perceptual = VGGPerceptual(torchvision.models.vgg16(weights=None))
    perceptual = perceptual.to(device)
    E = build_encoder(cfg, G.synthesis.style_dims(), resolution).to(device).train()
    opt_E = torch.optim.Adam(E.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.optim.d_lr or cfg.optim.lr, betas=cfg.optim.betas)
    x = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
    step = [0]

    def iteration() -> None:
        encoder_step(E, G, D, perceptual, x, cfg, opt_E)
        discriminator_step(E, G, D, x, cfg, opt_D, step[0])
        step[0] += 1

    return median_seconds(iteration, reps, device)


@click.command()
@click.option("--what", type=click.Choice(["extract", "train"]), default="extract", show_default=True)
@click.option("--depth", default=50, show_default=True, type=click.Choice([str(d) for d in DEPTHS]),
              help="extract: encoder depth (official: 50).")
@click.option("--resolution", default=256, show_default=True, type=click.IntRange(min=64),
              help="extract: input side.")
@click.option("--batch", default=None, type=click.IntRange(min=2),
              help="extract: 8; train: 16 (tiny) and 2 (paper, CPU) / 12 (paper, official per GPU).")
@click.option("--reps", default=5, show_default=True, type=click.IntRange(min=1), help="Timed repetitions.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def main(what: str, depth: str, resolution: int, batch: int | None, reps: int, device: str) -> None:
    """Feature-extraction throughput against ResNet-50, or seconds per training iteration."""
    try:
        dev = resolve_device(device)
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    configure_threads()
    if what == "train":
        paper_batch = batch or (12 if dev.type == "cuda" else 2)
        for setting, size in (("tiny", batch or 16), ("paper", paper_batch)):
            seconds = iteration_seconds(setting, size, reps, dev)
            click.echo(f"{setting}: {seconds:.3f} s per iteration at batch {size} ({1 / seconds:.2f} it/s, "
                       f"{size / seconds:.1f} img/s), {dev}")
        return
    batch = batch or 8
    try:
        encoder = GHFeatEncoder(depth=int(depth), resolution=resolution).to(dev).eval()
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    resnet = torchvision.models.resnet50(weights=None).to(dev).eval()
    ours = images_per_second(encoder, batch, resolution, reps, dev)
    reference = images_per_second(resnet, batch, resolution, reps, dev)
    click.echo(f"GH-Feat encoder (depth {depth}) {ours:.2f} img/s, torchvision ResNet-50 {reference:.2f} img/s at "
               f"{resolution} px, batch {batch}, {dev}: {ours / reference:.2f}x")


if __name__ == "__main__":
    main()
