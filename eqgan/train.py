"""Train EqGAN-SA (or one of its ablation rows) on one process or under torchrun.

    python -m eqgan.train --cfg lsun_cat --set data.path=/data/lsuncat200k.zip       # a table row by name
    cd eqgan && python train.py --cfg configs/tiny.yaml                              # the CPU preset
    torchrun --nproc_per_node=8 -m eqgan.train --cfg ffhq --set data.path=...        # paper scale
    python -m eqgan.train --cfg ffhq_sel --set data.path=...                         # the "+ SEL" row

Shared options: ``--cfg``, ``--set key=value``, ``--outdir``, ``--resume``, ``--seed``, ``--device``
(``common/cli.py``). Snapshots (``runs/eqgan/<NNNNN>-<cfg>/snapshot-*.pt``) hold G (with its heatmap encoders and
SELs, official key names), D, G_ema and the optimizers; ``--resume RUN_DIR`` continues bit for bit. ``stats.jsonl``
logs ``Metrics/DI`` per tick and ``Loss/G/align_loss``.
"""

from common.stylegan2.train import paper_command
from eqgan.config import EqGANConfig, config_names, config_path
from eqgan.method import EqGANSA

main = paper_command("eqgan", EqGANSA, EqGANConfig, config_path,
                     "Train EqGAN-SA with a config row (lsun_cat, ffhq, lsun_church, their _sel and _baseline rows, "
                     "tiny) or a YAML file.", rows=config_names())

if __name__ == "__main__":
    main()
