"""VolumeGAN's generator against the official code and closed forms: parameter counts (spec §9), outputs equal to
a small generator built and run by the official code (fixture), the trilinear border lookup, volume rendering of
known densities, importance sampling from the coarse weights, per-call settings that do not stick, the structure /
texture split and the progressive schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.checkpoint import CheckpointError
from volumegan import rendering as R
from volumegan.generator import VolumeGANGenerator
from volumegan.method import lod_at
from volumegan.official import official_generator_state, read_official_checkpoint

FIXTURE = Path(__file__).with_name("fixtures") / "official_g_small.pt"
CHECKPOINT = FIXTURE.with_name("official_checkpoint_small.pth")  # the same generator's weights, official layout


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("res,total,renderer,num_ws", [(256, 8_688_271, 2_350_479, 12), (128, 8_375_818, 2_038_026, 10),
                                                        (64, 7_652_613, 1_314_821, 8), (32, 6_337_792, 0, 6)])
def test_parameter_counts_of_the_official_configs(res, total, renderer, num_ws):
    G = VolumeGANGenerator(img_resolution=res)
    field = G.synthesis.field
    assert _count(G) == total and _count(G.synthesis.renderer) == renderer and G.num_ws == num_ws
    assert _count(G.mapping) == 2_101_248 and _count(field.feature_volume) == 3_440_032
    assert _count(field.mlp) == 664_671 and _count(field.mlp[0]) == 73_311  # 95 -> 256 with its affine
    assert _count(field.density) == 257 and _count(field.feature) == 131_584
    assert field.feature_volume.stage_channels == [256, 128, 64, 32]
    assert field.feature_volume.mapping_network.out_features == 960


def _small() -> VolumeGANGenerator:
    """The configuration of fixtures/make_official_g.py."""
    field = dict(layers=2, hidden=16, out_dim=16, freqs=3,
                 volume=dict(feat_res=8, init_res=4, base_channels=8, output_channels=4))
    return VolumeGANGenerator(z_dim=16, w_dim=512, img_resolution=32, mapping_layers=2, mapping_features=16,
                              nerf_res=8, channel_base=128, field=field, rays=R.RaySettings(num_steps=4)).eval()


def _official_state() -> dict[str, torch.Tensor]:
    return read_official_checkpoint(CHECKPOINT)["models"]["generator"]


def _official_small() -> VolumeGANGenerator:
    """The small generator with the fixture's official weights (biases off zero: non-trivial images)."""
    G = _small()
    G.load_state_dict(official_generator_state(_official_state(), G.state_dict()))
    return G


def test_outputs_equal_the_official_generator():
    saved = torch.load(FIXTURE, weights_only=True)
    G = _official_small()
    with torch.no_grad():
        ws = G.mapping(saved["z"], None)
        assert torch.allclose(ws, saved["wp"], atol=1e-5)
        volume = G.synthesis.field.feature_volume(ws[:, 0])
        assert torch.allclose(volume, saved["volume"], atol=1e-5)
        sigma, feature = G.synthesis.field(ws[:, :2], saved["points"])
        assert torch.allclose(sigma, saved["sigma"], atol=1e-5) and torch.allclose(feature, saved["feature"], atol=1e-5)
        for lod, image in zip(saved["lods"].tolist(), saved["images"]):
            out = G.synthesis.renderer(saved["feature_map"], ws[:, 2:], noise_mode="const", lod=lod)
            assert torch.allclose(out, image, atol=1e-5), lod
        # the whole NeRF branch from the same seed; the official renderer draws zero-scaled noise (randn * 0)
        # before each compositing, so the same draws are made here to keep the random streams aligned
        torch.manual_seed(int(saved["feature_map_seed"]))
        coarse = R.sample_rays(2, 8, G.synthesis.rays)
        sigma_c, feature_c = G.synthesis.field(ws[:, :2], coarse.points)
        torch.randn(2, 64, 4, 1)
        fine = R.importance_rays(coarse, R.volume_render(feature_c, sigma_c, coarse.depths).weights, 4)
        sigma_f, feature_f = G.synthesis.field(ws[:, :2], fine.points)
        depths, order = torch.cat([fine.depths, coarse.depths], -2).sort(-2)
        features = torch.cat([feature_f, feature_c], -2).gather(-2, order.expand(-1, -1, -1, -1, 16))
        rendered = R.volume_render(features, torch.cat([sigma_f, sigma_c], -2).gather(-2, order), depths)
    assert torch.allclose(rendered.values.permute(0, 3, 1, 2), saved["feature_map"], atol=1e-4)


def test_official_import_is_strict():
    saved = {"state": _official_state()}
    state = dict(saved["state"])
    del state["nerfmlp.fg_mlps.1.style.weight"]
    with pytest.raises(CheckpointError, match="lacks synthesis.field.mlp.1.affine.weight"):
        official_generator_state(state, _small().state_dict())
    with pytest.raises(CheckpointError, match=r"mapping.dense0.weight is \(16, 16\), the config builds \(512, 512\)"):
        official_generator_state(saved["state"], VolumeGANGenerator(img_resolution=32).state_dict())
    with pytest.raises(CheckpointError, match="synthesis.layer5.weight has no place here"):
        official_generator_state({**saved["state"], "synthesis.layer5.weight": torch.zeros(1)}, _small().state_dict())


def test_volume_lookup_is_trilinear_with_border_padding():
    volume = torch.arange(8.0).reshape(1, 1, 2, 2, 2)  # value = 4 z + 2 y + x at the corners
    bounds = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]) * 0.5
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.5, -0.5, 0.5], [0.25, 0.0, -0.5], [2.0, 0.1, -3.0],
                            [-0.9, 0.9, 0.9]]])
    got = R.interpolate_feature(points, volume, bounds)[0, 0]

    def trilinear(p):  # corners at +-0.5 -> unit cube, clamped to it (border padding)
        x, y, z = ((torch.tensor(p) + 0.5).clamp(0, 1)).tolist()
        return 4 * z + 2 * y + x  # the corner values are linear, so trilinear interpolation reproduces them

    expected = torch.tensor([trilinear(p) for p in points[0].tolist()])
    assert torch.allclose(got, expected, atol=1e-6)
    assert got[3] == pytest.approx(1.0 + 2 * 0.6)  # x clamped to 1, z to 0, y = 0.1 -> 0.6 of the way


def test_rendering_a_constant_and_a_step_density_matches_the_closed_form():
    depths = torch.linspace(1.0, 2.0, 11).reshape(1, 11, 1)  # delta 0.1
    sigma = torch.full((1, 11, 1), 3.0)
    values = torch.arange(11.0).reshape(1, 11, 1)
    out = R.volume_render(values, sigma, depths)
    alpha = 1 - math.exp(-0.3)
    expected = torch.tensor([alpha * (1 - alpha) ** i for i in range(10)] + [(1 - alpha) ** 10])  # last delta 1e10
    assert torch.allclose(out.weights[0, :, 0], expected, atol=1e-6)
    assert out.opacity.item() == pytest.approx(1.0, abs=1e-6)
    assert out.values.item() == pytest.approx(float((expected * torch.arange(11.0)).sum()), rel=1e-5)
    assert out.depth.item() == pytest.approx(float((expected * depths[0, :, 0]).sum()), rel=1e-5)
    step = torch.where(depths > 1.45, 1e4, -5.0)  # empty (relu of a negative density) until 1.5, opaque after
    out = R.volume_render(values, step, depths)
    assert out.weights[0, :5].abs().max() == 0 and out.weights[0, 5, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert out.depth.item() == pytest.approx(1.5, abs=1e-5) and out.values.item() == pytest.approx(5.0, abs=1e-4)


def test_importance_samples_follow_the_coarse_weights():
    bins = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    samples = R.sample_pdf(bins, torch.tensor([[0.0, 1.0, 0.0]]), 64, deterministic=True)[0, 1:-1]
    assert ((samples >= 1.0) & (samples <= 2.0)).all()  # u = 0 and 1 land on the ends (eps 1e-5 per bin)
    two = R.sample_pdf(bins[:, :3], torch.tensor([[1.0, 3.0]]), 5, deterministic=True, eps=1e-12)
    # inverse CDF of density 1/4 on [0, 1), 3/4 on [1, 2): u <= 1/4 -> 4u, else 1 + (u - 1/4) * 4/3
    expected = [4 * u if u <= 0.25 else 1 + (u - 0.25) * 4 / 3 for u in torch.linspace(0, 1, 5).tolist()]
    assert torch.allclose(two[0], torch.tensor(expected), atol=1e-6)
    random = R.sample_pdf(bins.repeat(2000, 1), torch.tensor([[1.0, 2.0, 5.0]]).repeat(2000, 1), 8,
                          generator=torch.Generator().manual_seed(0))
    share = torch.stack([((random >= i) & (random < i + 1)).float().mean() for i in range(3)])
    assert torch.allclose(share, torch.tensor([1.0, 2.0, 5.0]) / 8, atol=0.02)


def test_fine_points_lie_on_the_coarse_rays():
    settings = R.RaySettings(num_steps=6)
    rays = R.sample_rays(2, 4, settings, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(2, 4, 4, 6, 1, generator=torch.Generator().manual_seed(1))
    fine = R.importance_rays(rays, weights, 6)
    assert torch.allclose(fine.points, rays.origins[..., None, :] + rays.directions[..., None, :] * fine.depths)
    mids = 0.5 * (rays.depths[..., 1:, :] + rays.depths[..., :-1, :])
    assert (fine.depths >= mids.amin(-2, keepdim=True) - 1e-6).all()
    assert (fine.depths <= mids.amax(-2, keepdim=True) + 1e-6).all()
    # the camera convention: centre at r (sin p cos y, cos p, sin p sin y), looking at the origin
    centre = rays.origins[:, 0, 0]
    yaw, pitch = rays.yaw[:, 0], rays.pitch[:, 0]
    assert torch.allclose(centre, torch.stack([pitch.sin() * yaw.cos(), pitch.cos(), pitch.sin() * yaw.sin()], 1))
    middle = F.normalize(rays.directions[:, 1:3, 1:3].mean(dim=(1, 2)), dim=-1)
    assert torch.allclose(middle, F.normalize(-centre, dim=-1), atol=1e-6)


def test_per_call_settings_do_not_stick():
    G = _official_small()
    ws = G.mapping(torch.randn(2, 16), None)
    before = G.synthesis.rays
    with torch.no_grad():
        torch.manual_seed(0)
        a = G.synthesis.render(ws, noise_mode="const", perturb="none", yaw_std=0.0, pitch_std=0.0)
        torch.manual_seed(1)  # only the importance samples differ then
        b = G.synthesis.render(ws, noise_mode="const", perturb="none", yaw_std=0.0, pitch_std=0.0)
    assert G.synthesis.rays is before and before.perturb == "jitter"  # the official sampler keeps the overrides
    assert torch.equal(a.yaw, b.yaw) and torch.allclose(a.yaw, torch.full_like(a.yaw, math.pi / 2))
    torch.manual_seed(1)
    c = G.synthesis.render(ws, noise_mode="const")  # the defaults again: jittered samples, cameras from the prior
    assert not torch.allclose(c.yaw, b.yaw) and not torch.allclose(c.depth, b.depth)


def test_a_texture_swap_leaves_density_and_depth_untouched():
    G = _official_small()
    ws_a, ws_b = G.mapping(torch.randn(2, 16), None), G.mapping(torch.randn(2, 16), None)
    swapped = torch.cat([ws_a[:, :2], ws_b[:, 2:]], dim=1)
    yaw, pitch = torch.full((2, 1), 1.4), torch.full((2, 1), 1.6)
    with torch.no_grad():
        torch.manual_seed(1)
        a = G.synthesis.render(ws_a, noise_mode="const", yaw=yaw, pitch=pitch, perturb="none")
        torch.manual_seed(1)
        s = G.synthesis.render(swapped, noise_mode="const", yaw=yaw, pitch=pitch, perturb="none")
    assert torch.equal(a.depth, s.depth) and torch.equal(a.opacity, s.opacity)
    assert torch.equal(a.feature_map, s.feature_map) and not torch.equal(a.image, s.image)


def test_progressive_schedule_and_the_raw_nerf_phase():
    assert [lod_at(n, 3) for n in (0, 749_999, 750_000, 1_125_000, 1_500_000, 2_250_000, 4_500_000, 25_000_000)] \
        == [3.0, 3.0, 3.0, 2.5, 2.0, 2.0, 0.0, 0.0]
    G = _small()
    feature_map = torch.randn(2, 16, 8, 8)
    ws = G.mapping(torch.randn(2, 16), None)[:, 2:]
    renderer = G.synthesis.renderer
    raw = renderer(feature_map, ws, noise_mode="const", lod=2.0)  # 8 x 8 NeRF RGB, nearest-upsampled to 32
    assert torch.equal(raw, F.interpolate(feature_map[:, :3], scale_factor=4, mode="nearest"))
    full16 = renderer(feature_map, ws, noise_mode="const", lod=1.0)
    half = renderer(feature_map, ws, noise_mode="const", lod=1.5)
    assert torch.allclose(half, 0.5 * full16 + 0.5 * raw, atol=1e-6)  # alpha = ceil(lod) - lod


def test_nerf_branch_equals_sorted_compositing_of_all_samples():
    G = _official_small()
    ws = G.mapping(torch.randn(2, 16), None)
    with torch.no_grad():
        torch.manual_seed(3)
        out, yaw, pitch = G.synthesis.nerf(ws)
        torch.manual_seed(3)
        coarse = R.sample_rays(2, 8, G.synthesis.rays)
        sigma_c, feature_c = G.synthesis.field(ws[:, :2], coarse.points)
        fine = R.importance_rays(coarse, R.volume_render(feature_c, sigma_c, coarse.depths).weights, 4)
        sigma_f, feature_f = G.synthesis.field(ws[:, :2], fine.points)
        depths, order = torch.cat([fine.depths, coarse.depths], -2).sort(-2)
        features = torch.cat([feature_f, feature_c], -2).gather(-2, order.expand(-1, -1, -1, -1, 16))
        expected = R.volume_render(features, torch.cat([sigma_f, sigma_c], -2).gather(-2, order), depths)
    assert torch.equal(yaw, coarse.yaw) and torch.allclose(out.values, expected.values, atol=1e-5)
    assert torch.allclose(out.depth, expected.depth, atol=1e-6) and torch.allclose(out.opacity, expected.opacity)
