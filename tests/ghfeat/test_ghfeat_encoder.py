"""GH-Feat's encoder against the official structure (genforce/ghfeat networks_ghfeat.py; spec ghfeat.md §3, §9)."""

from __future__ import annotations

import pytest
import torch

from ghfeat.encoder import STYLEGAN_V1_256, GHFeatEncoder, SameConv2d, _same_max_pool, official_layout


def _counts(encoder: torch.nn.Module) -> tuple[int, int]:
    stats = sum(b.numel() for name, b in encoder.named_buffers() if "running" in name)
    return sum(p.numel() for p in encoder.parameters()), stats


def test_parameter_counts_equal_the_official_transcription():
    assert _counts(GHFeatEncoder(depth=50)) == (151_766_976, 83_328)  # spec §3.3 / §9.3 (train_ghfeat.py: depth 50)
    assert _counts(GHFeatEncoder(depth=18))[0] == 124_871_872
    encoder = GHFeatEncoder(depth=50)
    assert [head.out_features for head in encoder.heads] == [1792, 4096, 4096]  # res4 (fine), res5, res6 (coarse)
    assert sum(p.numel() for p in encoder.stage5.parameters()) == 8_664_064  # the extra stage
    assert sum(p.numel() for m in (*encoder.laterals,) for p in m.parameters()) == 23_594_496  # 3x3 FPN laterals


def test_feature_maps_and_codes_at_256px():
    encoder = GHFeatEncoder(depth=50).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        shapes = [tuple(f.shape[1:]) for f in encoder.backbone(x)]
        assert shapes == [(256, 64, 64), (512, 32, 32), (1024, 16, 16), (2048, 8, 8), (2048, 4, 4)]  # spec §9.4
        assert [tuple(f.shape[1:]) for f in encoder.fused_levels(x)] == [(512, 4, 4)] * 3
        codes = encoder(x)
    assert tuple(c.shape[1] for c in codes) == STYLEGAN_V1_256  # coarse, middle, fine: spec §9.5


def test_official_layout_tiles_the_fine_codes():
    n = 2
    coarse, middle = torch.randn(n, 4096), torch.randn(n, 4096)
    fine = torch.randn(n, 1792)
    latent = official_layout(coarse, middle, fine)
    assert latent.shape == (n, 14, 1024)
    assert torch.equal(latent[:, :4].reshape(n, -1), coarse) and torch.equal(latent[:, 4:8].reshape(n, -1), middle)
    assert torch.equal(latent[:, 8, :512], fine[:, :512]) and torch.equal(latent[:, 8, 512:], fine[:, :512])
    assert torch.equal(latent[:, 11, 768:], fine[:, 1280:1536])  # rows 10-11: 256-d codes tiled x4
    assert torch.equal(latent[:, 13, 896:], fine[:, 1664:])  # rows 12-13: 128-d codes tiled x8
    # the effective dimension: the first 2*C_l entries of each row (C = 512 x 8 rows, 256, 256, 128, 128, 64, 64)
    assert sum([1024] * 8 + [512, 512, 256, 256, 128, 128]) == 9_984


def test_tensorflow_same_padding_puts_the_extra_pixel_after():
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = conv(x)[0, 0]
    assert y.shape == (2, 2)
    assert y[0, 0] == x[0, 0, 0:3, 0:3].sum() and y[1, 1] == x[0, 0, 2:4, 2:4].sum()  # TF: pad 0 before, 1 after
    pooled = _same_max_pool(-x)[0, 0]  # padding never wins, even against negative values
    assert pooled.shape == (2, 2) and pooled[1, 1] == -10.0


def test_basic_and_bottleneck_units_follow_the_official_order():
    bottleneck = GHFeatEncoder(depth=50).stages[0][0]
    assert bottleneck.shortcut is not None  # stage 1's first unit projects too (official dim_match=False)
    assert bottleneck.shortcut[0].bias is None and bottleneck.conva.bias is not None
    with pytest.raises(ValueError, match="depth must be one of"):
        GHFeatEncoder(depth=20)
    with pytest.raises(ValueError, match="power-of-two input of at least 64 px"):
        GHFeatEncoder(depth=18, resolution=32)


def test_a_smaller_setting_of_the_same_encoder_for_32px():
    """The tiny preset's encoder (spec §8): stride-1 stem, three stages, FPN at 16/8/4 px, heads for tiny32's groups."""
    encoder = GHFeatEncoder(filters=[32, 48, 96, 192], units=[1, 1, 1], bottleneck=False, stem_stride=1,
                            extra_channels=192, fpn_channels=64, group_dims=(320, 192, 128), resolution=32)
    x = torch.randn(4, 3, 32, 32)
    assert [tuple(f.shape[1:]) for f in encoder.backbone(x)] == [(48, 32, 32), (96, 16, 16), (192, 8, 8),
                                                                  (192, 4, 4)]
    assert [tuple(f.shape[1:]) for f in encoder.fused_levels(x)] == [(64, 4, 4)] * 3
    assert [tuple(c.shape) for c in encoder(x)] == [(4, 320), (4, 192), (4, 128)]
    assert _counts(encoder)[0] == 1_921_472
    with pytest.raises(ValueError, match="filters .* and units .* disagree"):
        GHFeatEncoder(filters=[32, 48], units=[1, 1], bottleneck=False)
    with pytest.raises(ValueError, match="power-of-two input of at least 4 px"):
        GHFeatEncoder(filters=[8, 8, 8], units=[1, 1], bottleneck=False, stem_stride=1, resolution=24)


def test_bench_reports_images_per_second_against_resnet50():
    from click.testing import CliRunner

    from ghfeat.bench import main

    result = CliRunner().invoke(main, ["--depth", "18", "--resolution", "64", "--batch", "2", "--reps", "1"])
    assert result.exit_code == 0 and "img/s" in result.output and "ResNet-50" in result.output, result.output
    result = CliRunner().invoke(main, ["--resolution", "96"])
    assert result.exit_code == 2 and "power-of-two input" in result.output
