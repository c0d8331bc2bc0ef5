"""``python -m eqgan.bench [--official DIR]``: the cost of EqGAN-SA's G step, ours and the official side by side.

Times one Gmain step (forward and backward, the only phase EqGAN-SA changes besides G's larger forward) for the
baseline G (no SEL, no L_align), + SEL, and + SEL + L_align, plus the Grad-CAM pass alone (one D forward and backward
to the fakes' block outputs), at the tiny CPU preset's widths; all called alternately in one process, rotating the
order, median of ``--repeats`` after one warm-up. ``--official DIR`` (a clone of genforce/eqgan-sa) adds its G, D and
``StyleGAN2Loss.accumulate_gradients('Gmain')`` with ``align_loss=True`` built from the same state dicts. One thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import torch

from common.stylegan2.bench import alternating_medians, import_from
from common.stylegan2.networks import Discriminator, Generator
from common.threads import configure_threads
from eqgan.align import EqGANLoss, gradcam_weights
from eqgan.spatial import SpatialSynthesisNetwork

CONFIGS = {"tiny": (32, 512, 32, 64, 16), "tiny64": (32, 1024, 64, 64, 16)}  # res, base, max, z = w, batch


def _networks(res: int, base: int, cmax: int, zw: int, use_sel: bool) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    G = Generator(zw, 0, zw, res, 3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs=dict(channel_base=base, channel_max=cmax, use_sel=use_sel),
                  synthesis_class=SpatialSynthesisNetwork)
    return G, Discriminator(0, res, 3, channel_base=base, channel_max=cmax)


def _gmain(loss: object, G: torch.nn.Module, z: torch.Tensor) -> Callable[[], None]:
    c = torch.zeros([len(z), 0])

    def run() -> None:
        G.zero_grad(set_to_none=True)
        loss.accumulate_gradients("Gmain", None, None, z, c, gain=1)
    return run


def _official(root: Path, G: Generator, D: Discriminator, res: int, base: int, cmax: int, zw: int,
              z: torch.Tensor) -> Callable[[], None]:
    """The official Gmain with L_align, its networks loaded from ours."""
    networks = import_from(root, "training.networks")
    official_loss = import_from(root, "training.loss")
    Go = networks.Generator(z_dim=zw, c_dim=0, w_dim=zw, img_resolution=res, img_channels=3, use_sel=True,
                            mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=base,
                            channel_max=cmax, num_fp16_res=0, conv_clamp=None))
    Do = networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=base, channel_max=cmax,
                                num_fp16_res=0, conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))
    Go.load_state_dict(G.state_dict())
    Do.load_state_dict(D.state_dict())
    Go.requires_grad_(True)
    Do.requires_grad_(False)
    loss = official_loss.StyleGAN2Loss("cpu", Go.mapping, Go.synthesis, Do, style_mixing_prob=0, pl_weight=0,
                                       align_loss=True)
    c = torch.zeros([len(z), 0])

    def run() -> None:
        Go.zero_grad(set_to_none=True)
        loss.accumulate_gradients("Gmain", None, None, z, c, sync=False, gain=1)
    return run


@click.command()
@click.option("--configs", default="tiny", show_default=True, help=f"From {', '.join(CONFIGS)}.")
@click.option("--repeats", default=10, show_default=True)
@click.option("--official", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A clone of genforce/eqgan-sa to time side by side.")
def main(configs: str, repeats: int, official: Path | None) -> None:
    """Print median ms per Gmain step and the ratios."""
    configure_threads()
    names = [c.strip() for c in configs.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise click.UsageError(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    click.echo(f"Gmain step (forward + backward), CPU, {torch.get_num_threads()} thread(s), median of {repeats}")
    click.echo("| config | batch | arm | ms | / baseline Gmain | / official |")
    click.echo("|---|---|---|---|---|---|")
    for name in names:
        res, base, cmax, zw, batch = CONFIGS[name]
        z = torch.randn(batch, zw)
        arms = {}
        for arm, sel, align in (("baseline", False, False), ("+ SEL", True, False), ("+ SEL + L_align", True, True)):
            G, D = _networks(res, base, cmax, zw, sel)
            G.requires_grad_(True)
            D.requires_grad_(False)
            arms[arm] = _gmain(EqGANLoss(G, D, align_loss=align, style_mixing_prob=0, pl_weight=0), G, z)
        G, D = _networks(res, base, cmax, zw, True)
        fakes = G(z, None).detach()
        arms["Grad-CAM pass alone"] = lambda D=D, x=fakes: gradcam_weights(D, x, torch.zeros([len(x), 0]))
        if official is not None:
            arms["official + SEL + L_align"] = _official(official, G, D, res, base, cmax, zw, z)
        medians = alternating_medians(arms, repeats)
        for arm, seconds in medians.items():
            ratio = f"{seconds / medians['official + SEL + L_align']:.2f}" if official is not None else "-"
            click.echo(f"| {name} | {batch} | {arm} | {seconds * 1000:.1f} | {seconds / medians['baseline']:.2f} | "
                       f"{ratio} |")


if __name__ == "__main__":
    main()
