"""``python -m dynamicd.generate --network FILE --seeds 0-15 --trunc 0.7 --outdir out``: images from DynamicD.

``--network`` takes this package's snapshots (``runs/dynamicd/.../snapshot-*.pt``; G_ema is used) and official
genforce/dynamicd pickles (their D keeps the ``occupy_ratio`` it had at snapshot time; G is plain StyleGAN2's, so
the scheme does not matter here). The generator is StyleGAN2-ADA's, so this is the shared command.
"""

from common.stylegan2.generate import main

if __name__ == "__main__":
    main()
