"""Train VolumeGAN on one process or under torchrun.

    python -m volumegan.train --cfg ffhq256 --set data.path=/data/ffhq256.zip          # a paper row by name
    torchrun --nproc_per_node=8 -m volumegan.train --cfg ffhq256 --set data.path=...    # the official 8-GPU run
    cd volumegan && python train.py --cfg configs/tiny.yaml --set data.path=...         # the CPU preset

Shared options: ``--cfg``, ``--set key=value``, ``--outdir``, ``--resume``, ``--seed``, ``--device``
(``common/cli.py``). Snapshots (``runs/volumegan/<NNNNN>-<cfg>/snapshot-*.pt``) hold G, G_ema, D (with their lod),
the optimisers and the RNG; ``--resume RUN_DIR`` continues as the uninterrupted run would, the lod schedule included.
"""

from common.stylegan2.train import paper_command
from volumegan.config import VolumeGANConfig, config_names, config_path
from volumegan.method import VolumeGAN

main = paper_command("volumegan", VolumeGAN, VolumeGANConfig, config_path,
                     "Train VolumeGAN with a config row (ffhq256, celeba128, cats128, carla128, compcars256, "
                     "lsun_bedroom256, tiny) or a YAML file.", rows=config_names())

if __name__ == "__main__":
    main()
