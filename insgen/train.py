"""Train InsGen (or its StyleGAN2-ADA baseline) on one process or under torchrun.

    python -m insgen.train --cfg ffhq2k --set data.path=/data/ffhq256.zip          # a table row by name
    cd insgen && python train.py --cfg configs/tiny.yaml                           # the CPU preset
    torchrun --nproc_per_node=8 -m insgen.train --cfg ffhq2k --set data.path=...   # paper scale
    python -m insgen.train --cfg ffhq2k --set insgen.enabled=false ...             # the ADA baseline row

Shared options: ``--cfg``, ``--set key=value``, ``--outdir``, ``--resume``, ``--seed``, ``--device``
(``common/cli.py``). Snapshots (``runs/insgen/<NNNNN>-<cfg>/snapshot-*.pt``) hold G, D, G_ema, D_ema, both heads
with their queues, every optimizer and augment p; ``--resume RUN_DIR`` continues bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import click

from common import dist
from common.cli import RESOLVED_CONFIG, common_options, setup_run, user_errors
from common.config import ConfigError
from common.metrics import WeightsNotFoundError
from common.stylegan2.compose import method_names
from common.stylegan2.training import train
from insgen.config import InsGenConfig, config_path
from insgen.method import InsGen


@click.command()
@common_options
def main(
    cfg: str | None,
    overrides: tuple[str, ...],
    outdir: str | None,
    resume: str | None,
    seed: int | None,
    device: str | None,
) -> None:
    """Train InsGen with a config row (ffhq2k, ffhq10k, ffhq140k, afhq_cat, afhq_dog, afhq_wild, tiny) or file."""
    cfg_file = str(config_path(cfg)) if cfg else None
    if cfg_file and not Path(cfg_file).is_file():
        raise click.UsageError(f"config {cfg!r} not found: give a YAML file or one of the rows in insgen/configs/")
    resumed_config = Path(resume) / RESOLVED_CONFIG if resume and Path(resume).is_dir() else None
    try:
        names = method_names(cfg_file or resumed_config, overrides)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    if names not in ([], ["insgen"]):  # [] in run dirs written before configs named their methods
        raise click.UsageError(
            f"insgen.train trains InsGen alone, but the config's methods are {names}; combine methods with "
            "python -m common.stylegan2.train --cfg <file> (same config files)"
        )
    setup = setup_run(InsGenConfig, "insgen", cfg_file, overrides, outdir, resume, seed, device)
    with user_errors():
        try:
            state = train(setup.cfg, setup.run_dir, method=InsGen(), resume=setup.resume_from, device=setup.info.device)
        except WeightsNotFoundError as err:
            raise click.ClickException(str(err)) from None
    dist.print0(f"done: {state.cur_nimg / 1000:.1f} kimg in {setup.run_dir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
