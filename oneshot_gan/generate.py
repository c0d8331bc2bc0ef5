"""``python -m oneshot_gan.generate --network RUN --seeds 0-15 --outdir out``: images of an adapted generator.

``--network`` takes this package's run dirs and snapshots (G_ema: for GenDA the frozen source G with its attribute
adaptor, rebuilt by ``oneshot_gan.method:GenDA``); samples are drawn at ``--trunc`` (default 1: the adapted domain's
full diversity; the training-time truncation psi_train never applies outside training). The generator is
StyleGAN2-ADA's, so this is the shared command.
"""

from common.stylegan2.generate import main

if __name__ == "__main__":
    main()
