"""``python -m es_ddpm.summary --image_size 64 --num_channels 192 ...``: the ADM UNet's block table and parameter count.

Flags are guided-diffusion's model flags (or ``--cfg configs/X.yaml`` for a row's model); the network is built on the
``meta`` device, so the 552M-parameter LSUN model costs no memory. The last line is ``UNet <total params>``.
"""

from __future__ import annotations

import dataclasses
import typing

import click
import torch
from torch import nn

from common.cli import user_errors
from common.config import load_config
from es_ddpm.config import ESDDPMConfig, ModelConfig, build_unet, config_path


def block_table(model: nn.Module) -> list[tuple[str, str, int]]:
    """(name, module type, parameters) for each top-level block of the UNet."""
    rows = []
    for name, child in model.named_children():
        blocks = list(child.named_children()) if isinstance(child, nn.ModuleList) else [("", child)]
        for sub, block in blocks:
            kinds = "+".join(type(m).__name__ for m in block.children()) if sub else type(block).__name__
            rows.append((f"{name}.{sub}" if sub else name, kinds, sum(p.numel() for p in block.parameters())))
    return rows


def _flag_options(func: typing.Callable) -> typing.Callable:
    hints = typing.get_type_hints(ModelConfig)
    for f in reversed(dataclasses.fields(ModelConfig)):
        kind = hints[f.name]
        click_type = {bool: click.BOOL, int: int, float: float, str: str}.get(kind, str)
        func = click.option(f"--{f.name}", f.name, type=click_type, default=None, help=f"default {f.default!r}")(func)
    return func


@click.command()
@click.option("--cfg", default=None, help="Config file or name whose model section is the starting point.")
@_flag_options
def main(cfg: str | None, **flags: object) -> None:
    """Print the block table and the total parameter count of an ADM UNet."""
    with user_errors():
        overrides = [f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags.items()
                     if v is not None]
        config = load_config(ESDDPMConfig, config_path(cfg) if cfg else None, overrides)
        with torch.device("meta"):
            model = build_unet(config.model)
    width = max(len(name) for name, _, _ in block_table(model))
    for name, kinds, count in block_table(model):
        click.echo(f"{name:<{width}}  {count:>12,}  {kinds}")
    click.echo(f"UNet {sum(p.numel() for p in model.parameters())}")


if __name__ == "__main__":
    main()
