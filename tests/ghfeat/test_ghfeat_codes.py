"""GH-Feat's code groups on the project's StyleGAN2: layer grouping, widths, and an exact round trip through G."""

from __future__ import annotations

import pytest
import torch

from common.config import load_config
from common.stylegan2.build import build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from common.stylegan2.snapshot import load_networks
from ghfeat.codes import codes_to_styles, group_dims, style_groups, styles_to_codes


def test_tiny32_groups_are_b4_b8_then_b16_then_b32():
    G = load_networks(pretrained_source_gan(SourceTraining(total_kimg=0.032))).G_ema
    dims = G.synthesis.style_dims()
    coarse, middle, fine = style_groups(dims)
    assert coarse == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb"]  # spec §8: 5 coarse layers
    assert middle == ["b16.conv0", "b16.conv1", "b16.torgb"] and fine == ["b32.conv0", "b32.conv1", "b32.torgb"]
    assert group_dims(dims) == (320, 192, 128) and sum(group_dims(dims)) == 640


def test_paper256_groups_follow_the_official_resolutions():
    cfg = resolve(load_config(StyleGAN2Config, preset_path("paper256")), 256, gpus=1)
    dims = build_generator(cfg, 256, 3, 0).synthesis.style_dims()
    coarse, middle, fine = style_groups(dims)
    assert {n.split(".")[0] for n in coarse} == {"b4", "b8"} and {n.split(".")[0] for n in middle} == {"b16", "b32"}
    assert {n.split(".")[0] for n in fine} == {"b64", "b128", "b256"}
    with pytest.raises(ValueError, match="need G blocks at 4, 8, 16 and a higher resolution"):
        style_groups({"b4.conv1": 8, "b4.torgb": 8, "b8.conv0": 8, "b16.conv0": 8})


def test_codes_round_trip_through_g_exactly():
    G = load_networks(pretrained_source_gan(SourceTraining(total_kimg=0.032))).G_ema
    dims = G.synthesis.style_dims()
    ws = G.mapping(torch.randn(3, G.z_dim), None)
    styles = G.synthesis.compute_styles(ws)
    codes = styles_to_codes(styles, dims)
    assert [tuple(c.shape) for c in codes] == [(3, 320), (3, 192), (3, 128)]
    again = codes_to_styles(codes, dims)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(again, styles))
    img = G.synthesis(None, styles=again, noise_mode="const")
    assert torch.allclose(img, G.synthesis(ws, noise_mode="const"), atol=1e-5)
    zero = codes_to_styles([torch.zeros_like(c) for c in codes], dims)
    assert all(torch.equal(s, torch.ones_like(s)) for s in zero)  # a zero code is the neutral style (affine bias 1)
