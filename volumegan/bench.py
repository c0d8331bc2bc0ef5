"""``python -m volumegan.bench [--official /path/to/genforce/volumegan --deps DIR] [--device cuda]``: VolumeGAN's
speed at the FFHQ-256 config, side by side with the official code when its checkout is given (same process, same
weights, calls interleaved, medians):

- rays/s of the NeRF branch (coarse field, importance sampling, fine field, compositing: 32 x 32 rays x 24 samples
  per image);
- seconds per training step: G forward, D on the fakes, backward of the non-saturating G loss (``--batch`` images).

The official code runs with ``impl='ref'`` (its pure-PyTorch ops) on CPU; on a GPU both use their defaults. Its
extra dependencies (einops, easydict) are looked up in ``--deps`` (``pip install --target DIR einops easydict``).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable

import click
import torch
import torch.nn.functional as F

from common.dist import resolve_device
from common.threads import configure_threads
from volumegan.discriminator import ProgressiveDiscriminator, map_official_state_dict
from volumegan.generator import VolumeGANGenerator
from volumegan.official import official_generator_state

PS_CFG = dict(num_steps=12, ray_start=0.8, ray_end=1.2, radius=1, horizontal_mean=math.pi / 2, horizontal_stddev=0.3,
              vertical_mean=math.pi / 2, vertical_stddev=0.155, camera_dist="gaussian", fov=12, perturb_mode=None)


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _official_networks(root: str, deps: str | None, device: torch.device, resolution: int
                       ) -> tuple[torch.nn.Module, torch.nn.Module]:
    saved_path = list(sys.path)
    sys.path[:0] = [root] + ([deps] if deps else [])
    try:
        from models.volumegan_discriminator import VolumeGANDiscriminator
        from models.volumegan_generator import VolumeGANGenerator as OfficialGenerator
    finally:
        sys.path[:] = saved_path

    G = OfficialGenerator(resolution=resolution, nerf_res=32, ps_cfg=PS_CFG, hs_cfg=dict(clamp_mode="relu"),
                          vr_cfg=dict(clamp_mode="relu"), rgb_init_res_out=False).to(device)
    D = VolumeGANDiscriminator(resolution=resolution, architecture="resnet").to(device)
    return G, D


@click.command()
@click.option("--official", default=None, type=click.Path(exists=True, file_okay=False),
              help="A checkout of genforce/volumegan to time side by side.")
@click.option("--deps", default=None, type=click.Path(exists=True, file_okay=False),
              help="Where einops and easydict are installed (pip --target).")
@click.option("--resolution", default="256", show_default=True, type=click.Choice(["32", "64", "128", "256"]),
              help="Image resolution of the FFHQ config (nerf_res 32).")
@click.option("--batch", default=2, show_default=True, type=click.IntRange(min=1), help="Images per step.")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
def main(official: str | None, deps: str | None, resolution: str, batch: int, repeats: int, device: str) -> None:
    """Rays/s and s/step of this implementation (and the official one) at the FFHQ-256 config."""
    configure_threads()
    try:
        dev = resolve_device(device)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    impl = "ref" if dev.type == "cpu" else "cuda"
    torch.manual_seed(0)
    res = int(resolution)
    G = VolumeGANGenerator(img_resolution=res).to(dev)
    D = ProgressiveDiscriminator(res).to(dev)
    pair = None
    if official:
        try:
            off_G, off_D = _official_networks(official, deps, dev, res)
        except ImportError as err:
            raise click.UsageError(f"the official code does not import ({err}); pass --deps with einops and "
                                   "easydict installed") from None
        G.load_state_dict(official_generator_state(off_G.state_dict(), G.state_dict()))
        D.load_state_dict(map_official_state_dict(off_D.state_dict(), res))
        pair = (off_G, off_D)
    z = torch.randn(batch, 512, device=dev)
    rays = batch * 32 * 32

    def ours_nerf() -> None:
        with torch.no_grad():
            G.synthesis.nerf(G.mapping(z, None))

    def ours_step() -> None:
        loss = F.softplus(-D(G(z, None))).mean()
        loss.backward()

    def official_nerf() -> None:
        with torch.no_grad():
            pair[0].nerf_synthesis(pair[0].mapping(z, impl=impl)["wp"][:, :4])

    def official_step() -> None:
        image = pair[0](z, noise_mode="random", impl=impl)["image"]
        F.softplus(-pair[1](image, impl=impl)["score"]).mean().backward()

    rows = [("NeRF branch", rays, ours_nerf, official_nerf), ("training step", batch, ours_step, official_step)]
    for name, count, ours, theirs in rows:
        ours()  # warm-up
        if pair is None:
            t = _median_seconds(ours, repeats, dev)
            click.echo(f"{name}: {t:.3f} s ({count / t:.4g} {'rays' if count == rays else 'images'}/s)")
            continue
        theirs()
        times_ours, times_theirs = [], []
        for _ in range(repeats):  # interleaved: both see the same machine load
            times_ours.append(_median_seconds(ours, 1, dev))
            times_theirs.append(_median_seconds(theirs, 1, dev))
        a, b = statistics.median(times_ours), statistics.median(times_theirs)
        click.echo(f"{name}: this {a:.3f} s, official {b:.3f} s, ratio {a / b:.2f} (median of {repeats}; "
                   f"{count / a:.4g} vs {count / b:.4g} {'rays' if count == rays else 'images'}/s)")


if __name__ == "__main__":
    main()
