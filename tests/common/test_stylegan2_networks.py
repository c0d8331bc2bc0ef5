"""StyleGAN2-ADA networks against the official figures of stylegan2_base.md §3.3 / §11."""

from __future__ import annotations

import math

import pytest
import torch

from common.config import load_config
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.stylegan2.networks import (
    Discriminator,
    FullyConnectedLayer,
    Generator,
    MappingNetwork,
    MinibatchStdLayer,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _nets(preset: str, res: int, c_dim: int = 0):
    cfg = resolve(load_config(StyleGAN2Config, preset_path(preset)), res, gpus=1)
    return build_generator(cfg, res, 3, c_dim), build_discriminator(cfg, res, 3, c_dim)


# (preset, res, c_dim): G total, G.mapping, G.synthesis, D, G buffers, num_ws   (spec §3.3, measured officially)
OFFICIAL = {
    ("cifar", 32, 0): (19_947_539, 525_312, 19_422_227, 20_720_641, 3_392, 8),
    ("cifar", 32, 10): (20_215_315, 793_088, 19_422_227, 23_089_664, 3_392, 8),
    ("auto", 32, 0): (19_947_539, 525_312, 19_422_227, 21_507_073, 3_392, 8),
    ("auto", 64, 0): (22_243_608, 525_312, 21_718_296, 23_407_361, 11_632, 10),
    ("auto", 128, 0): (22_949_277, 525_312, 22_423_965, 23_882_369, 44_448, 12),
    ("auto", 256, 0): (23_191_522, 525_312, 22_666_210, 24_001_089, 175_568, 14),
    ("paper256", 256, 0): (24_767_458, 2_101_248, 22_666_210, 24_001_089, 175_568, 14),
    ("stylegan2", 256, 0): (30_034_338, 2_101_248, 27_933_090, 28_864_129, 175_568, 14),
    ("paper512", 512, 0): (30_276_583, 2_101_248, 28_175_335, 28_982_849, 699_904, 16),
    ("paper1024", 1024, 0): (30_370_060, 2_101_248, 28_268_812, 29_012_513, 2_797_104, 18),
}


@pytest.mark.parametrize("row", list(OFFICIAL), ids=lambda r: f"{r[0]}@{r[1]}-c{r[2]}")
def test_parameter_counts_match_official(row):
    G, D = _nets(*row)
    g_total, g_map, g_syn, d_total, g_buffers, num_ws = OFFICIAL[row]
    assert (_count(G), _count(G.mapping), _count(G.synthesis)) == (g_total, g_map, g_syn)
    assert _count(D) == d_total
    assert sum(b.numel() for b in G.buffers()) == g_buffers
    assert G.num_ws == num_ws


# spec §9: official networks at tiny widths (mapping 2 layers, mbstd 4): (cbase, cmax, z=w, res) -> G, D
OFFICIAL_TINY = {
    (2048, 128, 128, 32): (1_050_195, 1_153_473),
    (4096, 256, 256, 32): (4_189_331, 4_608_897),
    (1024, 64, 64, 32): (263_987, 288_993),
    (2048, 128, 128, 16): (906_254, 1_034_753),
    (1024, 64, 64, 16): (227_854, 259_329),
}


@pytest.mark.parametrize("widths", list(OFFICIAL_TINY), ids=str)
def test_tiny_width_counts_match_official(widths):
    base, cmax, zw, res = widths
    G = Generator(
        z_dim=zw,
        c_dim=0,
        w_dim=zw,
        img_resolution=res,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": base, "channel_max": cmax},
    )
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=base, channel_max=cmax)
    assert (_count(G), _count(D)) == OFFICIAL_TINY[widths]


def test_per_block_counts_match_official():
    G, D = _nets("cifar", 32)
    assert _count(G.synthesis.b4) == 2_894_852
    assert [_count(getattr(G.synthesis, f"b{r}")) for r in (8, 16, 32)] == [5_509_125] * 3
    assert [_count(getattr(D, f"b{r}")) for r in (32, 16, 8, 4)] == [4_721_664, 4_719_616, 4_719_616, 6_559_745]
    G, D = _nets("paper256", 256)
    assert (_count(G.synthesis.b128), _count(G.synthesis.b256)) == (705_669, 242_245)
    assert [_count(getattr(D, f"b{r}")) for r in (256, 128, 64)] == [119_232, 475_520, 1_901_312]


def test_state_dict_key_schema():
    G, D = _nets("cifar", 32, c_dim=10)
    g_keys = list(G.state_dict())
    assert g_keys[:2] == ["synthesis.b4.const", "synthesis.b4.resample_filter"]
    assert [k for k in g_keys if k.startswith("synthesis.b8.conv0.")] == [
        f"synthesis.b8.conv0.{n}"
        for n in ("weight", "noise_strength", "bias", "resample_filter", "noise_const", "affine.weight", "affine.bias")
    ]
    assert [k for k in g_keys if k.startswith("synthesis.b32.torgb.")] == [
        f"synthesis.b32.torgb.{n}" for n in ("weight", "bias", "affine.weight", "affine.bias")
    ]
    assert g_keys.index("mapping.w_avg") > g_keys.index("synthesis.b32.torgb.affine.bias")
    assert {"mapping.embed.weight", "mapping.fc0.weight", "mapping.fc1.bias"} <= set(g_keys)
    assert len(g_keys) == 77  # official cifar-cond G_ema state dict (spec §7)
    d_keys = set(D.state_dict())
    assert {"b32.fromrgb.weight", "b32.conv1.weight", "b4.conv.weight", "b4.fc.weight", "b4.out.weight"} <= d_keys
    assert {f"mapping.fc{i}.weight" for i in range(8)} <= d_keys  # D's label mapping keeps 8 layers
    assert not any(k.startswith("b16.fromrgb") or k.endswith("skip.weight") for k in d_keys)  # 'orig'


def _tiny_nets(c_dim: int = 0, architecture: str = "resnet"):
    torch.manual_seed(0)
    G = Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 16},
    )
    D = Discriminator(
        c_dim=c_dim,
        img_resolution=16,
        img_channels=3,
        architecture=architecture,
        channel_base=256,
        channel_max=16,
        epilogue_kwargs={"mbstd_group_size": 2},
    )
    return G, D


@pytest.mark.parametrize("c_dim", [0, 5])
def test_output_shapes(c_dim):
    G, D = _tiny_nets(c_dim)
    z, c = torch.randn(4, 16), torch.eye(5)[:4] if c_dim else torch.zeros(4, 0)
    ws = G.mapping(z, c)
    assert ws.shape == (4, G.num_ws, 16) and G.num_ws == 6  # 2 * log2(16) - 2
    img = G(z, c)
    assert img.shape == (4, 3, 16, 16) and img.dtype == torch.float32
    assert D(img, c).shape == (4, 1)
    for mode in ("const", "none"):
        assert G(z, c, noise_mode=mode).shape == (4, 3, 16, 16)
    assert D.__class__(
        c_dim=c_dim, img_resolution=16, img_channels=3, architecture="skip", channel_base=256, channel_max=16
    )(img, c).shape == (4, 1)


def test_equalised_lr_gains():
    fc = FullyConnectedLayer(64, 8, lr_multiplier=0.01, bias_init=1)
    assert fc.weight_gain == pytest.approx(0.01 / 8) and fc.bias_gain == 0.01
    assert fc.weight.std().item() == pytest.approx(100.0, rel=0.15)  # stored N(0,1)/lr_mult
    x = torch.randn(3, 64)
    expected = x @ (fc.weight * 0.01 / 8).t() + fc.bias * 0.01
    torch.testing.assert_close(fc(x), expected)
    G, D = _tiny_nets()
    assert G.synthesis.b8.conv0.affine.bias.detach().eq(1).all()  # style bias init 1
    assert D.b16.conv0.weight_gain == pytest.approx(1 / math.sqrt(16 * 9))


def test_w_avg_update_and_truncation():
    mapping = MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=3, num_layers=2)
    z = torch.randn(5, 8)
    with torch.no_grad():
        w = mapping(z, None, skip_w_avg_update=True)[:, 0]
        mapping(z, None)
    torch.testing.assert_close(mapping.w_avg, w.mean(0) * (1 - 0.995))  # lerp(mean, 0, 0.995)
    mapping.eval()
    with torch.no_grad():
        full = mapping(z, None)
        cut = mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], mapping.w_avg + 0.5 * (full[:, :2] - mapping.w_avg))
    torch.testing.assert_close(cut[:, 2], full[:, 2])


def test_minibatch_std_groups_are_strided():
    x = torch.zeros(4, 2, 1, 1)
    x[:, 0, 0, 0] = torch.tensor([0.0, 10.0, 2.0, 10.0])  # groups of 2: samples (0, 2) and (1, 3)
    y = MinibatchStdLayer(group_size=2)(x)[:, 2, 0, 0]
    # group (0, 2): std 1 in channel 0 and sqrt(1e-8) in channel 1, averaged; group (1, 3): sqrt(1e-8) in both
    expected = torch.tensor([(math.sqrt(1 + 1e-8) + 1e-4) / 2, 1e-4, (math.sqrt(1 + 1e-8) + 1e-4) / 2, 1e-4])
    torch.testing.assert_close(y, expected, atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="not divisible by the group size"):
        MinibatchStdLayer(group_size=4)(torch.zeros(6, 2, 1, 1))


def test_fused_and_non_fused_modconv_agree_in_generator():
    G, _ = _tiny_nets()
    z = torch.randn(2, 16)
    with torch.no_grad():
        a = G(z, None, noise_mode="const", fused_modconv=True)
        b = G(z, None, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_summary_cli_ends_with_official_totals():
    from click.testing import CliRunner

    from common.stylegan2.summary import main

    result = CliRunner().invoke(main, ["--cfg", "auto", "--res", "64"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-2:] == ["G 22243608", "D 23407361"]
    assert "b64" in result.output and "mapping" in result.output
    result = CliRunner().invoke(main, ["--cfg", "nope", "--res", "64"])
    assert result.exit_code == 2 and "unknown StyleGAN2 preset 'nope'" in result.output
