"""``python -m common.stylegan2.summary --cfg paper256 --res 256 [--cond 10]``: per-block parameter table of G and D.

Ends with two lines ``G <total params>`` and ``D <total params>``; the totals equal the official networks'
(spec §3.3). ``--cfg`` takes a preset name or a YAML file with a StyleGAN2 config (e.g. a paper's config).
"""

from __future__ import annotations

from pathlib import Path

import click
from torch import nn

from common.config import ConfigError, load_config
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import PRESETS, StyleGAN2Config, preset_path, resolve


def block_rows(net: nn.Module, prefix: str) -> list[tuple[str, int, int]]:
    """(name, parameters, buffers) of each direct block of ``net`` (mapping and synthesis blocks for G)."""
    rows = []
    for name, child in net.named_children():
        if name == "synthesis":
            rows += block_rows(child, f"{prefix}synthesis.")
            continue
        params = sum(p.numel() for p in child.parameters())
        buffers = sum(b.numel() for b in child.buffers())
        rows.append((f"{prefix}{name}", params, buffers))
    return rows


def _table(title: str, rows: list[tuple[str, int, int]]) -> str:
    lines = [f"{title:<24}{'params':>14}{'buffers':>12}", "-" * 50]
    lines += [f"{name:<24}{params:>14,}{buffers:>12,}" for name, params, buffers in rows]
    return "\n".join(lines)


@click.command()
@click.option("--cfg", "cfg_name", required=True, help=f"Preset ({', '.join(PRESETS)}) or a YAML file.")
@click.option("--res", type=int, required=True, help="Image resolution (power of two).")
@click.option("--cond", type=int, default=0, show_default=True, help="Number of classes (0: unconditional).")
@click.option("--channels", type=int, default=3, show_default=True, help="Image channels.")
@click.option("--gpus", type=int, default=1, show_default=True, help="GPU count for the 'auto' derivations.")
def main(cfg_name: str, res: int, cond: int, channels: int, gpus: int) -> None:
    """Print the block table of G and D for a preset, resolution and label count."""
    path = Path(cfg_name) if cfg_name.endswith((".yaml", ".yml")) else None
    try:
        cfg = load_config(StyleGAN2Config, path or preset_path(cfg_name))
        cfg = resolve(cfg, res, gpus=gpus)
        G = build_generator(cfg, res, channels, cond)
        D = build_discriminator(cfg, res, channels, cond)
    except (ConfigError, ValueError) as err:  # ValueError: e.g. a resolution that is not a power of two
        raise click.UsageError(str(err)) from None
    click.echo(_table("G", block_rows(G, "")))
    click.echo(f"num_ws {G.num_ws}\n")
    click.echo(_table("D", block_rows(D, "")))
    click.echo("")
    click.echo(f"G {sum(p.numel() for p in G.parameters())}")
    click.echo(f"D {sum(p.numel() for p in D.parameters())}")


if __name__ == "__main__":
    main()
