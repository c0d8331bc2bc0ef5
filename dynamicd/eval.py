"""``python -m dynamicd.eval --ckpt RUN_OR_SNAPSHOT --data FULL_DATASET``: FID/KID of G_ema against the FULL dataset.

The generator is StyleGAN2-ADA's, so this is the shared command (``common/stylegan2/evaluate.py``): the reference is
always the dataset given in ``--data`` with no subset (the limited-data FID trap), x-flips as the run's
``data.mirror``; project snapshots, run dirs and official pickles are accepted.
"""

from common.stylegan2.evaluate import main

if __name__ == "__main__":
    main()
