"""The three training-stage CLIs share this body (``procA.train_src``, ``procA.train_proca``, ``procA.train_ssl``).

    python -m procA.train_src   --cfg procA/configs/gta5.yaml --set model.imagenet_weights=resnet101-5d3b4d8f.pth
    python -m procA.train_proca --cfg procA/configs/gta5.yaml --set proca.init=SRC/model.pt \\
                                --set contrast.prototypes=PROTO/prototypes.pt
    python -m procA.train_ssl   --cfg procA/configs/gta5.yaml --set pseudo_label.labels_dir=PL/pseudo_labels
    python -m procA.train_proca --resume runs/procA/00002-gta5          # continue from the latest snapshot
"""

from __future__ import annotations

from collections.abc import Callable

import click

from common import dist
from common.cli import common_options, failed_start_undone, setup_run, user_errors
from common.config import config_rows
from procA.config import CONFIG_DIR, ProCAConfig, config_path
from procA.training import Stage, train_stage


def stage_command(stage: Stage, help_text: str) -> Callable[..., None]:
    """A click command running ``stage`` with the shared options."""

    @click.command(help=help_text)
    @common_options(rows=config_rows(CONFIG_DIR))
    def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None,
             seed: int | None, device: str | None) -> None:
        setup = setup_run(ProCAConfig, "procA", config_path(cfg), overrides, outdir, resume, seed, device)
        with failed_start_undone(setup, remove_untrained=False), user_errors():
            path = train_stage(setup.cfg, stage, setup.run_dir, setup.info.device, resume=setup.resume_from)
        dist.print0(f"done: {stage} model -> {path}")
        dist.cleanup()

    return main
