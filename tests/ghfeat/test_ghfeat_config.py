"""GH-Feat's official defaults, the inverted flags' meaning, and the learning-rate schedule (spec ghfeat.md §2.2)."""

from __future__ import annotations

import pytest

from common.config import ConfigError, load_config
from ghfeat.config import BATCH_PER_GPU, TOTAL_KIMG, GHFeatConfig, learning_rate


def test_official_defaults_with_the_store_false_flags_read_as_what_they_do():
    cfg = load_config(GHFeatConfig)
    assert cfg.data.mirror and cfg.train.pretrained_D  # flips ON and D from the pickle unless the flags are passed
    assert (cfg.loss.feature_scale, cfg.loss.d_scale, cfg.loss.r1_gamma) == (5e-5, 0.08, 10.0)
    assert (cfg.optim.lr, tuple(cfg.optim.betas), cfg.optim.eps) == (1e-4, (0.9, 0.99), 1e-8)
    assert cfg.train.batch == 8 * BATCH_PER_GPU[256] and cfg.train.total_kimg == TOTAL_KIMG[256]
    assert cfg.train.iterations() == 145_833 and cfg.seed == 1000


def test_learning_rate_decays_by_0_8_every_quarter_of_the_run():
    cfg = load_config(GHFeatConfig)
    n = cfg.train.iterations()
    assert learning_rate(cfg.optim, 0, n) == 1e-4
    assert learning_rate(cfg.optim, n // 4, n) == pytest.approx(0.8e-4)
    assert learning_rate(cfg.optim, n, n) == pytest.approx(1e-4 * 0.8**4, rel=1e-4)  # not 0.8**8 (spec §2.2)
    cfg = load_config(GHFeatConfig, overrides=["optim.decay_every=10"])
    assert learning_rate(cfg.optim, 5, 1000) == pytest.approx(1e-4 * 0.8**0.5)


@pytest.mark.parametrize("override, key", [("optim.lr=0", "optim.lr"), ("optim.decay_rate=1.5", "decay_rate"),
                                           ("optim.decay_every=0", "decay_every"), ("train.batch=0", "train.batch"),
                                           ("train.total_kimg=-1", "total_kimg")])
def test_out_of_range_values_are_one_line(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(GHFeatConfig, overrides=[override])


@pytest.mark.parametrize("row", ["ffhq256", "tower256", "bedroom256"])
def test_paper_rows_are_the_official_defaults_and_build_the_official_encoder(row):
    import torch

    from common.stylegan2.build import build_generator
    from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
    from ghfeat.codes import group_dims
    from ghfeat.config import config_path
    from ghfeat.encoder import STYLEGAN_V1_256, GHFeatEncoder
    from ghfeat.training import build_encoder

    cfg = load_config(GHFeatConfig, config_path(row))
    default = load_config(GHFeatConfig)
    assert (cfg.optim, cfg.train, cfg.loss, cfg.encoder, cfg.seed) == (default.optim, default.train, default.loss,
                                                                     default.encoder, 1000)
    assert cfg.data.mirror and cfg.data.source == "path"
    with torch.device("meta"):
        assert sum(p.numel() for p in GHFeatEncoder(depth=cfg.encoder.depth, group_dims=STYLEGAN_V1_256)
                   .parameters()) == 151_766_976  # the official network (StyleGAN v1 heads)
    G = build_generator(resolve(load_config(StyleGAN2Config, preset_path("paper256")), 256, gpus=1), 256, 3, 0)
    assert group_dims(G.synthesis.style_dims()) == (2560, 3072, 1792)
    with torch.device("meta"):
        E = build_encoder(cfg, G.synthesis.style_dims(), 256)
    assert sum(p.numel() for p in E.parameters()) == 130_787_776  # the same encoder, heads for StyleGAN2's S-space
