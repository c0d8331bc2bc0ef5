"""Pretrain InsLoc (or the MoCo v2 baseline) on ImageNet-style images.

    torchrun --nproc_per_node=8 -m insloc.train --cfg fpn_200ep --set data.path=/data/imagenet/train.txt \\
        --set data.root=/data/imagenet/train
    torchrun --nproc_per_node=8 -m insloc.train --cfg moco_v2_200ep --set data.path=/data/imagenet/train
    cd insloc && python train.py --cfg configs/fpn_200ep.yaml --set data.path=...

``--resume RUN_DIR`` continues a run; ``python -m insloc.export`` converts the result for fine-tuning.
"""

from __future__ import annotations

import click

from common import dist
from common.cli import common_options, failed_start_undone, row_config_file, setup_run, user_errors
from insloc.config import InsLocConfig, config_names, config_path
from insloc.training import train_insloc


@click.command()
@common_options(rows=config_names())
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None) -> None:
    """Self-supervised pretraining: InsLoc on composites, or MoCo v2 on whole images."""
    cfg_file = row_config_file(cfg, resume, config_path, "insloc", "fpn_200ep")
    setup = setup_run(InsLocConfig, "insloc", cfg_file, overrides, outdir, resume, seed, device)
    with failed_start_undone(setup), user_errors():
        result = train_insloc(setup.cfg, setup.run_dir, setup.info.device, resume=setup.resume_from)
    dist.print0(f"done: {result.step} iterations in {setup.run_dir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
