"""``python -m eqgan.eval --ckpt RUN_OR_SNAPSHOT --data FULL_DATASET --metrics fid50k_full,di``: FID and DI.

FID of G_ema (each image with its own random heatmap, as the official metrics) against the full dataset, and the
disequilibrium indicator DI = mean raw D(real) - mean raw D(G(z)) with the snapshot's D and training G (spec §5).
The shared command (``common/stylegan2/evaluate.py``); project snapshots, run dirs and official pickles.
"""

from common.stylegan2.evaluate import main

if __name__ == "__main__":
    main()
