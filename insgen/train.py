"""Train InsGen (or its StyleGAN2-ADA baseline) on one process or under torchrun.

    python -m insgen.train --cfg ffhq2k --set data.path=/data/ffhq256.zip          # a table row by name
    cd insgen && python train.py --cfg configs/tiny.yaml                           # the CPU preset
    torchrun --nproc_per_node=8 -m insgen.train --cfg ffhq2k --set data.path=...   # paper scale
    python -m insgen.train --cfg ffhq2k --set insgen.enabled=false ...             # the ADA baseline row

Shared options: ``--cfg``, ``--set key=value``, ``--outdir``, ``--resume``, ``--seed``, ``--device``
(``common/cli.py``). Snapshots (``runs/insgen/<NNNNN>-<cfg>/snapshot-*.pt``) hold G, D, G_ema, D_ema, both heads
with their queues, every optimizer and augment p; ``--resume RUN_DIR`` continues bit for bit.
"""

from common.stylegan2.train import paper_command
from insgen.config import InsGenConfig, config_names, config_path
from insgen.method import InsGen

main = paper_command("insgen", InsGen, InsGenConfig, config_path,
                     "Train InsGen with a config row (ffhq2k, ffhq10k, ffhq140k, afhq_cat, afhq_dog, afhq_wild, "
                     "tiny) or a YAML file.", rows=config_names())

if __name__ == "__main__":
    main()
