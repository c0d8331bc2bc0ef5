"""Adapt a pretrained StyleGAN2 to a target domain from one image: GenDA, or a baseline of the same loop.

    python -m oneshot_gan.train --cfg tiny --target photo.png                        # CPU: the cached tiny source
    python -m oneshot_gan.train --cfg ffhq_babies --source ffhq256.pkl --target babies/00017.png
    python -m oneshot_gan.train --cfg ffhq_babies --source ffhq256.pkl --target five_babies/   # few-shot: a folder
    python -m oneshot_gan.train --cfg ffhq_babies_finetune --source ffhq256.pkl --target ...   # TGAN baseline
    cd oneshot_gan && python train.py --cfg configs/tiny.yaml --target ../photo.png

``--target`` (config ``genda.target``) is one image, or a folder / zip of a few images; it is centre-cropped,
area-resized to ``data.resolution`` and cached as a one-image dataset (``oneshot_gan/target.py``). ``--source``
(config ``train.init_from``) is a project snapshot, a run dir or an official StyleGAN2-ADA ``.pkl``; ``shapes32``
names the cached tiny source GAN of ``common.stylegan2.pretrained`` (trained on first use). Shared options:
``--set``, ``--outdir``, ``--resume``, ``--seed``, ``--device`` (``common/cli.py``); ``--resume RUN_DIR``
continues bit for bit. Snapshots: ``runs/oneshot_gan/<NNNNN>-<cfg>/snapshot-*.pt`` (for GenDA: the frozen G with
its adaptor, the source D with the new head).
"""

from __future__ import annotations

from pathlib import Path

import click

from common import dist
from common.cli import common_options, failed_start_undone, setup_run, user_errors
from common.config import ConfigError, load_config
from common.data import DatasetError
from common.stylegan2.pretrained import pretrained_source_gan
from common.stylegan2.training import train
from oneshot_gan.config import GenDAConfig, config_names, config_path
from oneshot_gan.method import GenDA
from oneshot_gan.target import target_dataset

TINY_SOURCE = "shapes32"  # train.init_from value naming the cached tiny source GAN


def prepared_overrides(cfg_file: str | None, overrides: list[str]) -> list[str]:
    """``overrides`` plus ``data.path`` of the prepared target and the resolved source path; one line on bad input.
    Reads the config only (nothing is written but the cached target dataset)."""
    config = load_config(GenDAConfig, cfg_file, overrides)
    if not config.genda.target:
        raise ConfigError("no target: pass --target IMAGE (one image of the target domain, or a folder of a few)")
    if not config.data.resolution:
        raise ConfigError("data.resolution is not set: give the source model's resolution, e.g. --set "
                          "data.resolution=256")
    source = config.train.init_from
    if source is None:
        raise ConfigError("no source model: pass --source PATH (a project snapshot, run dir or StyleGAN2-ADA .pkl)")
    if source != TINY_SOURCE and not Path(source).exists():
        raise ConfigError(f"source model '{source}' does not exist; give a project snapshot, a run dir or an "
                          f"official StyleGAN2-ADA .pkl (or {TINY_SOURCE}, the cached tiny source GAN)")
    dataset = target_dataset(config.genda.target, config.data.resolution)
    extra = ["data.source=path", f"data.path={dataset}"]
    if source == TINY_SOURCE:
        extra.append(f"train.init_from={pretrained_source_gan()}")
    return overrides + extra


@click.command()
@common_options(rows=config_names())
@click.option("--target", default=None, help="The reference: one image, or a folder / zip of a few (few-shot).")
@click.option("--source", default=None, help=f"Pretrained source: project snapshot, run dir, official .pkl or "
              f"{TINY_SOURCE}.")
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, target: str | None, source: str | None) -> None:
    """Adapt a pretrained StyleGAN2 to the domain of one target image (GenDA or a baseline)."""
    cfg_file = str(config_path(cfg)) if cfg else None
    if cfg_file and not Path(cfg_file).is_file():
        raise click.UsageError(f"config {cfg!r} not found: give a YAML file or one of the rows in oneshot_gan/configs/")
    resuming_run = resume is not None and Path(resume).is_dir()
    if resuming_run and (target or source):
        raise click.UsageError("--resume RUN_DIR continues with the run's own target and source: drop --target and "
                               "--source")
    if cfg_file is None and not resuming_run:
        cfg_file = str(config_path("tiny"))
    extra = list(overrides)
    extra += [f"genda.target={target}"] if target else []
    extra += [f"train.init_from={source}"] if source else []
    if not resuming_run:
        try:
            extra = prepared_overrides(cfg_file, extra)
        except (ConfigError, DatasetError) as err:
            raise click.UsageError(str(err)) from None
    setup = setup_run(GenDAConfig, "oneshot_gan", cfg_file, extra, outdir, resume, seed, device)
    with failed_start_undone(setup), user_errors():
        state = train(setup.cfg, setup.run_dir, method=GenDA(), resume=setup.resume_from, device=setup.info.device)
    dist.print0(f"done: {state.batch_idx} iterations ({state.cur_nimg / 1000:.1f} kimg) in {setup.run_dir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
