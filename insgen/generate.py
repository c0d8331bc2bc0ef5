"""``python -m insgen.generate --network FILE --seeds 0-15 --trunc 0.7 --outdir out``: images from InsGen.

``--network`` takes this package's snapshots (``runs/insgen/.../snapshot-*.pt``; G_ema is used) and the official
InsGen / StyleGAN2-ADA pickles (``afhqcat.pkl``, ``ffhq256_2k.pkl``, ...; DDP-wrapped heads and D_ema inside them are
read without running their code). The generator is StyleGAN2-ADA's, so this is the shared command.
"""

from common.stylegan2.generate import main

if __name__ == "__main__":
    main()
