"""``python -m common.stylegan2.train --cfg common/stylegan2/configs/tiny.yaml``: StyleGAN2-ADA training.

Shared options: ``--cfg``, ``--set key=value``, ``--outdir``, ``--resume``, ``--seed``, ``--device``
(see ``common/cli.py``). A preset name is accepted for ``--cfg`` too (``--cfg tiny``). Under ``torchrun`` every
process trains one shard of each batch (DDP). A config's ``methods`` list adds paper methods, combined
(``common/stylegan2/compose.py``): ``--cfg limited --set methods=[insgen]`` or a paper's own config file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import click

from common import dist
from common.cli import RESOLVED_CONFIG, common_options, failed_start_undone, setup_run, user_errors
from common.config import ConfigError
from common.metrics import WeightsNotFoundError
from common.stylegan2.compose import method_names, method_of_config
from common.stylegan2.config import PRESETS, StyleGAN2Config, preset_path
from common.stylegan2.method import Method
from common.stylegan2.training import train


@click.command()
@common_options(rows=PRESETS)
def main(
    cfg: str | None,
    overrides: tuple[str, ...],
    outdir: str | None,
    resume: str | None,
    seed: int | None,
    device: str | None,
) -> None:
    """Train StyleGAN2-ADA with a preset or config file."""
    if cfg in PRESETS:
        cfg = str(preset_path(cfg))
    resumed_config = Path(resume) / RESOLVED_CONFIG if resume and Path(resume).is_dir() else None
    try:
        method = method_of_config(cfg or resumed_config, overrides)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    setup = setup_run(method.config_class, "stylegan2", cfg, overrides, outdir, resume, seed, device)
    with failed_start_undone(setup), user_errors():
        try:
            state = train(setup.cfg, setup.run_dir, method=method, resume=setup.resume_from, device=setup.info.device)
        except WeightsNotFoundError as err:
            raise click.ClickException(str(err)) from None
    dist.print0(f"done: {state.cur_nimg / 1000:.1f} kimg in {Path(setup.run_dir)}")
    dist.cleanup()


def paper_command(package: str, method_class: Callable[[], Method], config_class: type[StyleGAN2Config],
                  config_path: Callable[[str], Path], help_text: str, rows: Sequence[str] = ()) -> click.Command:
    """The ``<package>.train`` CLI of a paper method: a row name or YAML file for ``--cfg``, the shared options, and
    a one-line refusal of configs that combine methods (those train with ``python -m common.stylegan2.train``)."""

    @click.command(help=help_text)
    @common_options(rows=rows)
    def command(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None,
                seed: int | None, device: str | None) -> None:
        cfg_file = str(config_path(cfg)) if cfg else None
        if cfg_file and not Path(cfg_file).is_file():
            raise click.UsageError(
                f"config {cfg!r} not found: give a YAML file or one of the rows in {package}/configs/"
            )
        resumed_config = Path(resume) / RESOLVED_CONFIG if resume and Path(resume).is_dir() else None
        try:
            names = method_names(cfg_file or resumed_config, overrides)
        except ConfigError as err:
            raise click.UsageError(str(err)) from None
        if names not in ([], [package]):  # [] in run dirs written before configs named their methods
            raise click.UsageError(
                f"{package}.train trains {method_class.__name__} alone, but the config's methods are {names}; combine "
                "methods with python -m common.stylegan2.train --cfg <file> (same config files)"
            )
        setup = setup_run(config_class, package, cfg_file, overrides, outdir, resume, seed, device)
        with failed_start_undone(setup), user_errors():
            try:
                state = train(setup.cfg, setup.run_dir, method=method_class(), resume=setup.resume_from,
                              device=setup.info.device)
            except WeightsNotFoundError as err:
                raise click.ClickException(str(err)) from None
        dist.print0(f"done: {state.cur_nimg / 1000:.1f} kimg in {setup.run_dir}")
        dist.cleanup()

    return command


if __name__ == "__main__":
    main()
