"""``python -m dynamicd.bench [--configs tiny,paper256] [--official DIR]``: the cost of DynamicD's masks.

One D forward + backward (``D(x).sum().backward()``) on the same batch, for the plain D and DynamicD's sub-networks
(first-k and random subsets, r = 0.75, the config's keepd), called alternately in one process so that every arm sees
the same machine state; median of ``--repeats`` after one warm-up. Overhead = DynamicD / plain - 1 (the masks add
no FLOP saving: full-size convolutions run on masked weights, plus the mask construction).

``--official DIR`` (a clone of genforce/dynamicd) adds the official D with the same dynamic kwargs (random subsets
by numpy's global RNG), built from the same state dict. CPU runs use one thread (``GENFORCE_NUM_THREADS``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import torch
from torch import nn

from common.stylegan2.bench import alternating_medians, import_from
from common.stylegan2.networks import Discriminator
from common.threads import configure_threads
from dynamicd.width import WidthController, install

# name -> (resolution, channel_base, channel_max, keepd, CPU batch): the testbed D and the paper's 256 px D
CONFIGS = {"tiny": (16, 1024, 64, 3, 32), "paper256": (256, 16384, 512, 9, 4)}
RATIO = 0.75


def _ours(res: int, base: int, cmax: int, keepd: int, mode: str | None) -> Discriminator:
    torch.manual_seed(0)
    D = Discriminator(0, res, 3, channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=256)
    if mode is not None:
        install(D, WidthController(RATIO, randomly_select=mode == "random"), keepd)
    return D


def _official(root: Path, res: int, base: int, cmax: int, keepd: int) -> nn.Module:
    """genforce/dynamicd's D with --occupy_start r --randomly_select TRUE --keepd K (its train.py's kwargs)."""
    networks = import_from(root, "training.networks")
    dynamic = dict(occupy_ratio=RATIO, randomly_select=True)
    return networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=base, channel_max=cmax,
                                  num_fp16_res=0, conv_clamp=256,
                                  block_kwargs=dict(dynamic_kwargs=dynamic, keepd=keepd),
                                  epilogue_kwargs=dict(mbstd_group_size=4, **dynamic))


def _step(D: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        D.zero_grad(set_to_none=True)
        D(x, None).sum().backward()
    return run


@click.command()
@click.option("--configs", default="tiny,paper256", show_default=True, help=f"From {', '.join(CONFIGS)}.")
@click.option("--repeats", default=10, show_default=True)
@click.option("--batch", default=None, type=int, help="Batch [32 for tiny, 4 for paper256 on CPU, 8 on CUDA].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--official", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A clone of genforce/dynamicd to time side by side.")
def main(configs: str, repeats: int, batch: int | None, device: str, official: Path | None) -> None:
    """Print median ms per D forward+backward and the ratios."""
    configure_threads()
    dev = torch.device(device)
    names = [c.strip() for c in configs.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise click.UsageError(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    click.echo(f"D forward+backward, r = {RATIO}, {torch.get_num_threads()} thread(s), {dev}, median of {repeats}")
    click.echo("| config | batch | arm | ms | / plain | / official |")
    click.echo("|---|---|---|---|---|---|")
    for name in names:
        res, base, cmax, keepd, cpu_batch = CONFIGS[name]
        n = batch or (cpu_batch if dev.type == "cpu" else 8)
        x = torch.randn(n, 3, res, res, device=dev)
        models = {"plain": _ours(res, base, cmax, keepd, None), "first-k": _ours(res, base, cmax, keepd, "first"),
                  "random": _ours(res, base, cmax, keepd, "random")}
        if official is not None:
            models["official random"] = _official(official, res, base, cmax, keepd)
            models["official random"].load_state_dict(models["plain"].state_dict())
        medians = alternating_medians({k: _step(m.to(dev), x) for k, m in models.items()}, repeats, dev)
        for arm, seconds in medians.items():
            vs_official = f"{seconds / medians['official random']:.2f}" if official is not None else "-"
            click.echo(f"| {name} | {n} | {arm} | {seconds * 1000:.1f} | {seconds / medians['plain']:.3f} | "
                       f"{vs_official} |")


if __name__ == "__main__":
    main()
