"""Train a GH-Feat encoder against a frozen, pretrained StyleGAN2 generator.

    python -m ghfeat.train --cfg tiny                                   # CPU, offline: cached tiny source GAN
    python -m ghfeat.train --cfg ffhq256 --generator ffhq256.pkl --data ffhq256.zip
    torchrun --nproc_per_node=8 -m ghfeat.train --cfg ffhq256 --generator ffhq256.pkl --data ffhq256.zip
    cd ghfeat && python train.py --cfg configs/tiny.yaml

Official command: ``train_ghfeat.py TRAIN.tfrecords TEST.tfrecords GENERATOR.pkl --num_gpus 8 [--d_scale 0.08]
[--depth 50] [--mirror_augment] [--pretrained_D]``. Here ``--data`` is a StyleGAN2-ADA zip or folder at the
generator's resolution, ``--generator`` a project snapshot / run dir or an official StyleGAN2-ADA ``.pkl``
(``shapes32``: the cached tiny source GAN), GPUs come from torchrun or SLURM. The two official ``store_false``
flags are named for what they do: flips are on unless ``--no-mirror`` (official: passing ``--mirror_augment``
turns them off); D starts from the generator file's D unless ``--fresh-D`` (official: passing ``--pretrained_D``).
The official spellings are refused with that explanation. Shared options: ``--set``, ``--outdir``, ``--resume``,
``--seed``, ``--device`` (``common/cli.py``); ``--resume RUN_DIR`` continues bit for bit.
"""

from __future__ import annotations

import click

from common import dist
from common.cli import common_options, failed_start_undone, row_config_file, setup_run, user_errors
from ghfeat.config import GHFeatConfig, config_names, config_path
from ghfeat.training import train_ghfeat

INVERTED = {"--mirror_augment": "--no-mirror", "--pretrained_D": "--fresh-D"}


def _refuse_official(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        raise click.UsageError(f"{param.opts[0]} is the official store_false flag (it turned the feature OFF); here "
                               f"use {INVERTED[param.opts[0]]} for that")
    return value


@click.command()
@common_options(rows=config_names())
@click.option("--generator", default=None, help="Frozen generator: project snapshot, run dir, StyleGAN2-ADA .pkl or "
              "shapes32.")
@click.option("--data", default=None, help="Training images: a StyleGAN2-ADA zip or folder at G's resolution.")
@click.option("--mirror/--no-mirror", default=None, help="Random x-flips [config: on, official default].")
@click.option("--pretrained-D/--fresh-D", "pretrained_d", default=None,
              help="D from the generator file, or freshly initialised [config: pretrained, official default].")
@click.option("--d-scale", type=float, default=None, help="Adversarial weight of the encoder loss [0.08].")
@click.option("--depth", type=click.Choice(["18", "34", "50", "101"]), default=None, help="Encoder depth [50].")
@click.option("--mirror_augment", is_flag=True, hidden=True, expose_value=False, callback=_refuse_official)
@click.option("--pretrained_D", is_flag=True, hidden=True, expose_value=False, callback=_refuse_official)
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, generator: str | None, data: str | None, mirror: bool | None,
         pretrained_d: bool | None, d_scale: float | None, depth: str | None) -> None:
    """Train GH-Feat's hierarchical encoder (E step, then D step, per iteration)."""
    cfg_file = row_config_file(cfg, resume, config_path, "ghfeat", "tiny")
    extra = list(overrides)
    extra += [f"generator.path={generator}"] if generator else []
    extra += ["data.source=path", f"data.path={data}"] if data else []
    extra += [f"data.mirror={str(mirror).lower()}"] if mirror is not None else []
    extra += [f"train.pretrained_D={str(pretrained_d).lower()}"] if pretrained_d is not None else []
    extra += [f"loss.d_scale={d_scale}"] if d_scale is not None else []
    extra += [f"encoder.depth={depth}"] if depth else []
    setup = setup_run(GHFeatConfig, "ghfeat", cfg_file, extra, outdir, resume, seed, device)
    with failed_start_undone(setup), user_errors():
        result = train_ghfeat(setup.cfg, setup.run_dir, setup.info.device, resume=setup.resume_from)
    dist.print0(f"done: {result.step} iterations, reconstruction MSE {result.scalars.get('E/pixel', float('nan')):.4g} "
                f"in {setup.run_dir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
