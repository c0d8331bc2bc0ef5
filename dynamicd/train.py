"""Train DynamicD (or its constant-width twin) on one process or under torchrun.

    python -m dynamicd.train --cfg ffhq2k_dec --set data.path=/data/ffhq256.zip        # a table row by name
    cd dynamicd && python train.py --cfg configs/tiny.yaml                             # the CPU preset
    torchrun --nproc_per_node=8 -m dynamicd.train --cfg ffhq140k_inc --set data.path=...   # paper scale
    python -m dynamicd.train --cfg ffhq2k_const --set data.path=...                    # the constant-width twin

Shared options: ``--cfg``, ``--set key=value``, ``--outdir``, ``--resume``, ``--seed``, ``--device``
(``common/cli.py``). Snapshots (``runs/dynamicd/<NNNNN>-<cfg>/snapshot-*.pt``) hold the full-width D (plain
StyleGAN2 keys), G, G_ema, optimizers and augment p; ``--resume RUN_DIR`` continues bit for bit, the width schedule
included (``--set dynamicd.restart_on_resume=true`` restarts it, as the official code). DynamicD with InsGen:
``python -m common.stylegan2.train --cfg <file with methods: [insgen, dynamicd]>``.
"""

from common.stylegan2.train import paper_command
from dynamicd.config import DynamicDConfig, config_names, config_path
from dynamicd.method import DynamicD

main = paper_command("dynamicd", DynamicD, DynamicDConfig, config_path,
                     "Train DynamicD with a config row (*_inc, *_dec and their *_const twins, tiny, tiny_inc) "
                     "or a YAML file.", rows=config_names())

if __name__ == "__main__":
    main()
