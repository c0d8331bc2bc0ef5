"""Train CMPL (or a baseline of the same loop) for semi-supervised action recognition.

    python -m cmpl.train --cfg tiny                                        # CPU, offline synthetic clips
    python -m cmpl.train --cfg tiny --set ssl.method=fixmatch              # the FixMatch baseline
    torchrun --nproc_per_node=8 -m cmpl.train --cfg k400_1pct --set data.root=/data/kinetics400/videos_train \\
        --set data.train_list=kinetics400_train_list_videos.txt --set data.val_list=kinetics400_val_list_videos.txt
    cd cmpl && python train.py --cfg configs/ucf101_1pct.yaml

The labelled split is drawn once per class with ``data.split_seed`` and saved (``data.split_file``, default
``<run dir>/split.json``); pass the same file to reuse it across runs. ``--resume RUN_DIR`` continues a run.
"""

from __future__ import annotations

import click

from cmpl.config import CMPLConfig, config_names, config_path
from cmpl.training import train_cmpl
from common import dist
from common.cli import common_options, failed_start_undone, row_config_file, setup_run, user_errors


@click.command()
@common_options(rows=config_names())
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None) -> None:
    """Semi-supervised training of the primary (and auxiliary) network."""
    cfg_file = row_config_file(cfg, resume, config_path, "cmpl", "tiny")
    setup = setup_run(CMPLConfig, "cmpl", cfg_file, overrides, outdir, resume, seed, device)
    with failed_start_undone(setup), user_errors():
        result = train_cmpl(setup.cfg, setup.run_dir, setup.info.device, resume=setup.resume_from)
    top1 = result.scalars.get("primary/top1", float("nan"))
    dist.print0(f"done: {result.step} iterations, primary top-1 {top1:.3f} (one centre clip) in {setup.run_dir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
