"""ADA augment pipe and p controller (spec stylegan2_base.md §2.2, §2.3, §11): filters, each op on constructed
inputs, sampling probabilities, p = 0 identity, second-order gradients, and the controller's arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.stylegan2 import augment
from common.stylegan2.ada import AdaptiveP
from common.stylegan2.augment import (
    AUGPIPE_PRESETS,
    FILTER_BAND_POWER,
    SYM2,
    SYM6,
    AugmentParams,
    AugmentPipe,
    augment_pipe,
    filter_bank,
)

F64 = torch.float64
BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32):
    return torch.rand(n, c, h, w, generator=_gen(seed), dtype=dtype) * 2 - 1


def _pipe(p: float = 1.0, **ops: float) -> AugmentPipe:
    pipe = AugmentPipe(**ops)
    pipe.p.fill_(p)
    return pipe


def _geom(*matrices: list[list[float]]) -> AugmentParams:
    return AugmentParams(geom=torch.tensor(matrices, dtype=F64))


def _rotation(theta: float) -> list[list[float]]:
    c, s = math.cos(theta), math.sin(theta)
    return [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]


def _chroma(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel distance from the grey axis, (N, H, W)."""
    return (x - x.mean(dim=1, keepdim=True)).norm(dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Filters


def test_sym6_is_orthonormal_with_six_vanishing_moments():
    # the published 16-17 digit values satisfy the defining identities to ~1e-12
    h = torch.tensor(SYM6, dtype=F64)
    assert len(h) == 12
    assert h.sum().item() == pytest.approx(math.sqrt(2), abs=1e-14)
    for shift in range(6):  # <h, h shifted by 2k> = delta_k (orthonormal translates)
        assert (h[2 * shift :] * h[: 12 - 2 * shift]).sum().item() == pytest.approx(float(shift == 0), abs=1e-11)
    n = torch.arange(12, dtype=F64) / 11
    alternating = torch.tensor([(-1.0) ** k for k in range(12)], dtype=F64)
    for moment in range(6):  # H(z) has a 6-fold zero at z = -1  <=>  the wavelet has 6 vanishing moments
        assert (alternating * n**moment * h).sum().item() == pytest.approx(0.0, abs=1e-11)
    assert (alternating * n**6 * h).sum().abs().item() > 1e-4  # ... and not 7


def test_sym2_closed_form_matches_published_coefficients():
    # pywt's dec_lo (and the official table) carry ~12 correct digits; the closed form is exact
    published = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
    assert SYM2 == pytest.approx(published, abs=1e-12)
    h = torch.tensor(SYM2, dtype=F64)
    assert h.sum().item() == pytest.approx(math.sqrt(2), abs=1e-15)
    assert (h * h).sum().item() == pytest.approx(1.0, abs=1e-15)
    assert (h[2:] * h[:2]).sum().item() == pytest.approx(0.0, abs=1e-15)


def test_geometric_filter_buffer_is_normalised_sym6():
    pipe = AugmentPipe()
    expected = torch.tensor(SYM6, dtype=F64) / math.sqrt(2)
    assert pipe.Hz_geom.shape == (12,) and pipe.Hz_geom.dtype == torch.float32
    assert torch.allclose(pipe.Hz_geom.double(), expected, atol=1e-8)
    assert pipe.Hz_geom.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_filter_bank_splits_the_spectrum_into_four_octaves():
    bank = filter_bank()
    assert bank.shape == (4, 43) and AugmentPipe().Hz_fbank.shape == (4, 43)  # official buffer shape (spec §11)
    impulse = torch.zeros(43, dtype=F64)
    impulse[21] = 1
    assert torch.allclose(bank.sum(dim=0), impulse, atol=1e-15)  # bands add up to the identity
    assert torch.allclose(bank, bank.flip(1), atol=1e-15)  # zero-phase
    taps = torch.arange(43, dtype=F64) - 21
    response = lambda omega: (bank * torch.cos(omega * taps)).sum(dim=1)  # real: the rows are symmetric
    assert torch.allclose(response(0.0), torch.tensor([1.0, 0, 0, 0], dtype=F64), atol=1e-14)  # DC: lowest band
    assert torch.allclose(response(math.pi), torch.tensor([0, 0, 0, 1.0], dtype=F64), atol=1e-14)  # Nyquist: top
    # band 3 is the finest half-band |H(w + pi)|^2 / 2, which is 1/2 at w = pi/2 (power-complementary QMF)
    assert response(math.pi / 2)[3].item() == pytest.approx(0.5, abs=1e-14)
    assert torch.allclose(AugmentPipe().Hz_fbank.double(), bank, atol=1e-7)


def _upfirdn_1d(x: np.ndarray, f: np.ndarray, up: int, down: int, pad0: int, pad1: int, flip: bool) -> np.ndarray:
    """Textbook upfirdn on one axis: zero insertion, zero padding, convolution (or correlation), decimation."""
    stuffed = np.zeros(len(x) * up)
    stuffed[::up] = x
    padded = np.concatenate([np.zeros(max(pad0, 0)), stuffed, np.zeros(max(pad1, 0))])
    padded = padded[max(-pad0, 0) : len(padded) - max(-pad1, 0)]
    kernel = f if flip else f[::-1]  # np.correlate with the reversed filter = convolution
    return np.correlate(padded, kernel, mode="valid")[::down]


def test_resampling_helpers_follow_the_upfirdn2d_definition():
    f = AugmentPipe().Hz_geom.double()
    x = _images(1, 1, 7, 9, dtype=F64)
    fn = f.numpy()
    up = augment._upsample2x(x, f)[0, 0].numpy()
    expected = np.stack([_upfirdn_1d(row, 2 * fn, 2, 1, 6, 5, flip=False) for row in x[0, 0].numpy()])
    expected = np.stack([_upfirdn_1d(col, 2 * fn, 2, 1, 6, 5, flip=False) for col in expected.T]).T
    np.testing.assert_allclose(up, expected, atol=1e-14)
    y = _images(1, 1, 30, 34, dtype=F64)
    down = augment._downsample2x(y, f, crop=1)[0, 0].numpy()
    expected = np.stack([_upfirdn_1d(row, fn, 1, 2, -1, -1, flip=True) for row in y[0, 0].numpy()])
    expected = np.stack([_upfirdn_1d(col, fn, 1, 2, -1, -1, flip=True) for col in expected.T]).T
    np.testing.assert_allclose(down, expected, atol=1e-14)


def test_dense_and_convolution_paths_agree(monkeypatch):
    pipe = AugmentPipe()
    x = _images(3, 3, 12, 10, dtype=F64)
    g_inv = torch.tensor([_rotation(0.7), _rotation(-2.0), _rotation(3.0)], dtype=F64)
    g_inv[:, 0, :2] *= 1.3
    taps = torch.tensor([[1.5, 1.0, 0.5, 2.0], [0.2, 1, 1, 1], [1, 1, 3, 1]], dtype=F64) @ pipe.Hz_fbank.double()
    dense = augment._resample(x, g_inv, pipe.Hz_geom), augment._filter(x, taps)
    monkeypatch.setattr(augment, "_DENSE_MAX_SIDE", 0)
    conv = augment._resample(x, g_inv, pipe.Hz_geom), augment._filter(x, taps)
    for a, b in zip(dense, conv):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# p = 0, presets, module surface


@pytest.mark.parametrize("preset", sorted(AUGPIPE_PRESETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_p0_returns_the_input_unchanged(preset, channels):
    x = _images(8, channels).requires_grad_(True)
    pipe = augment_pipe(preset, p=0.0)
    assert pipe(x) is x  # exact identity; the official pipe still resamples (max abs diff 4e-6, spec §11)


def test_identity_through_the_resampler_is_numerically_exact():
    # the official path at p = 0 (spec §11: max abs diff 4.0e-6 on 4x3x32x32 U(-1, 1)); also pins the half-pixel
    # alignment of the sym6 up/down pair inside the resampler
    x = _images(4, 3, 32, 32)
    out = augment._resample(x, torch.eye(3, dtype=F64).repeat(4, 1, 1), AugmentPipe().Hz_geom)
    assert (out - x).abs().max().item() < 1e-5


def test_presets_are_the_official_augpipe_specs():
    assert set(AUGPIPE_PRESETS["bgc"]) == set(BLIT + GEOM + COLOR)
    assert set(AUGPIPE_PRESETS["bgcfnc"]) == set(BLIT + GEOM + COLOR + ("imgfilter", "noise", "cutout"))
    assert set(AUGPIPE_PRESETS) == {"blit", "geom", "color", "filter", "noise", "cutout"} | {
        "bg",
        "bgc",
        "bgcf",
        "bgcfn",
        "bgcfnc",
    }
    pipe = augment_pipe("bgc", p=0.3)
    assert float(pipe.p) == pytest.approx(0.3)
    assert all(getattr(pipe, op) == 1 for op in BLIT + GEOM + COLOR)
    assert pipe.imgfilter == pipe.noise == pipe.cutout == 0
    assert set(pipe.state_dict()) == {"p", "Hz_geom", "Hz_fbank"}  # official buffer names
    assert float(AugmentPipe().p) == 1.0  # official constructor default


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown augment preset 'bgx'; valid presets: blit, geom, .*bgcfnc"):
        augment_pipe("bgx")


def test_colour_ops_reject_other_channel_counts():
    with pytest.raises(ValueError, match="RGB .* or grey .* got C=4"):
        augment_pipe("bgc", p=0.5)(_images(2, 4))


# ---------------------------------------------------------------------------------------------------------------
# Geometry


def test_forced_xflip_is_the_exact_mirror():
    x = _images(2)
    out = AugmentPipe().apply(x, _geom([[-1, 0, 0], [0, 1, 0], [0, 0, 1]], [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert torch.equal(out, x.flip(3))


def test_sampled_xflip_mirrors_half_of_the_images_exactly():
    torch.manual_seed(0)
    x = _images(64)
    out = _pipe(xflip=1)(x)
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(m != k for m, k in zip(mirrored, kept))
    assert 16 < sum(mirrored) < 48  # Binomial(64, 1/2): 4 sigma


@pytest.mark.parametrize("quarter", [1, 2, 3])
def test_rotate90_matches_rot90(quarter):
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][quarter]
    x = _images(1, 3, 12, 12)
    out = AugmentPipe().apply(x, _geom([[c, -s, 0], [s, c, 0], [0, 0, 1]]))  # the pipe's G_inv for k quarter turns
    assert torch.equal(out, torch.rot90(x, quarter, dims=(2, 3)))


def test_sampled_rotate90_gives_one_of_the_four_rotations():
    torch.manual_seed(1)
    x = _images(32, 3, 8, 8)
    out = _pipe(rotate90=1)(x)
    hits = [[torch.equal(o, torch.rot90(i, k, dims=(1, 2))) for k in range(4)] for o, i in zip(out, x)]
    assert all(sum(h) == 1 for h in hits)
    assert all(any(h[k] for h in hits) for k in range(4))


def test_integer_translation_moves_pixels_and_reflects_at_the_border():
    x = _images(1, 3, 10, 12)
    tx, ty = 3, -2  # content moves 3 px right and 2 px up; G_inv = translate(-tx, -ty)
    out = AugmentPipe().apply(x, _geom([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]))
    reflect = lambda i, n: -i if i < 0 else (2 * (n - 1) - i if i >= n else i)
    expected = torch.stack(
        [torch.stack([x[0, :, reflect(r - ty, 10), reflect(c - tx, 12)] for c in range(12)], -1) for r in range(10)],
        -2,
    )
    assert torch.equal(out[0], expected)
    # the official resampling of the same transform agrees to float precision (borders included)
    resampled = augment._resample(
        x, torch.tensor([[[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]], dtype=F64), AugmentPipe().Hz_geom
    )
    assert (resampled - out).abs().max().item() < 1e-5


def test_sampled_integer_translation_stays_within_xint_max():
    pipe = _pipe(xint=1)
    g = pipe.sample_params((4000, 3, 32, 32), generator=_gen()).geom
    shifts = g[:, :2, 2]
    assert torch.equal(shifts, shifts.round())
    assert shifts.abs().max().item() == 4  # round(0.125 * 32)
    assert torch.equal(g[:, :2, :2], torch.eye(2, dtype=F64).expand(4000, 2, 2))


def _smooth(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """A band-limited test image (a few low-frequency waves) at centred pixel coordinates, (H, W)."""
    return torch.cos(0.21 * xs + 0.1) * torch.sin(0.17 * ys + 0.4) + 0.5 * torch.cos(0.13 * (xs - ys))


def test_resampler_warps_by_the_inverse_matrix_about_the_centre():
    h = w = 32
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64) - 15.5, torch.arange(w, dtype=F64) - 15.5, indexing="ij")
    g_inv = torch.tensor(_rotation(0.5), dtype=F64)
    g_inv[:2, :2] *= 0.8  # zoom in a little
    g_inv[:2, 2] = torch.tensor([1.5, -0.75], dtype=F64)
    out = augment._resample(_smooth(xs, ys)[None, None], g_inv[None], AugmentPipe().Hz_geom)[0, 0]
    src_x = g_inv[0, 0] * xs + g_inv[0, 1] * ys + g_inv[0, 2]  # out(p) = in(G_inv p)
    src_y = g_inv[1, 0] * xs + g_inv[1, 1] * ys + g_inv[1, 2]
    inner = (src_x.abs() < 12) & (src_y.abs() < 12)  # away from the reflected borders
    err = (out - _smooth(src_x, src_y))[inner].abs().max().item()
    # a transposed matrix, a sign or centre error gives errors ~1; resampling blur/phase stays ~1e-2
    assert err < 0.03


def test_geometric_op_probabilities():
    n = 20000
    tol = lambda prob: 4 * math.sqrt(prob * (1 - prob) / n)
    g = _pipe(0.5, xflip=1).sample_params((n, 3, 16, 16), generator=_gen(1)).geom
    assert (g[:, 0, 0] == -1).double().mean().item() == pytest.approx(0.25, abs=tol(0.25))  # p * 1/2
    g = _pipe(0.5, rotate=1).sample_params((n, 3, 16, 16), generator=_gen(2)).geom
    rotated = (g != torch.eye(3, dtype=F64)).any(dim=2).any(dim=1)
    assert rotated.double().mean().item() == pytest.approx(0.5, abs=tol(0.5))  # pre OR post rotation: p
    g = _pipe(1.0, scale=1).sample_params((n, 3, 16, 16), generator=_gen(3)).geom
    log2_scale = -torch.log2(g[:, 0, 0])
    assert log2_scale.std().item() == pytest.approx(0.2, abs=4 * 0.2 / math.sqrt(2 * n))
    assert log2_scale.mean().item() == pytest.approx(0.0, abs=4 * 0.2 / math.sqrt(n))
    assert torch.equal(g[:, 0, 0], g[:, 1, 1])  # isotropic
    g = _pipe(1.0, aniso=1).sample_params((n, 3, 16, 16), generator=_gen(4)).geom
    torch.testing.assert_close(g[:, 0, 0] * g[:, 1, 1], torch.ones(n, dtype=F64))  # sx = s, sy = 1/s


# ---------------------------------------------------------------------------------------------------------------
# Colour


def test_colour_ops_keep_a_grey_image_grey():
    torch.manual_seed(2)
    grey = _images(16, 1).expand(16, 3, 16, 16)
    out = _pipe(brightness=1, contrast=1, hue=1, saturation=1, lumaflip=1)(grey)
    assert (out - grey).abs().max().item() > 0.1
    torch.testing.assert_close(out, out[:, :1].expand_as(out), atol=1e-6, rtol=0)


def test_lumaflip_negates_grey_images():
    torch.manual_seed(3)
    grey = _images(32, 1).expand(32, 3, 16, 16)
    out = _pipe(lumaflip=1)(grey)
    flipped = [torch.allclose(o, -i, atol=1e-6) for o, i in zip(out, grey)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, grey)) and any(flipped)


def test_hue_rotation_preserves_luma_and_chroma():
    torch.manual_seed(4)
    x = _images(16)
    out = _pipe(hue=1)(x)
    torch.testing.assert_close(out.mean(dim=1), x.mean(dim=1), atol=1e-6, rtol=0)
    torch.testing.assert_close(_chroma(out), _chroma(x), atol=1e-5, rtol=0)
    assert (out - x).abs().max().item() > 0.1


def test_hue_rotation_by_a_third_turn_cycles_the_channels():
    x = _images(2)
    color = augment._luma_rotation(torch.full((2,), 2 * math.pi / 3, dtype=F64))
    out = AugmentPipe(hue=1).apply(x, AugmentParams(color=color))
    torch.testing.assert_close(out, x[:, [2, 0, 1]], atol=1e-6, rtol=0)  # (r, g, b) -> (b, r, g)


def test_saturation_scales_chroma_by_one_factor_per_image():
    torch.manual_seed(5)
    x = _images(16)
    out = _pipe(saturation=1)(x)
    torch.testing.assert_close(out.mean(dim=1), x.mean(dim=1), atol=1e-6, rtol=0)
    ratio = _chroma(out) / _chroma(x)
    torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-4, rtol=0)
    assert ratio.std().item() > 0.1


def test_brightness_then_contrast():
    x = _images(1)
    b, c = torch.tensor([0.3], dtype=F64), torch.tensor([1.7], dtype=F64)
    color = augment._scale3d(c) @ augment._translate3d(b)  # the pipe's order: brightness first
    out = AugmentPipe(brightness=1, contrast=1).apply(x, AugmentParams(color=color))
    torch.testing.assert_close(out, 1.7 * (x + 0.3), atol=1e-6, rtol=0)


def test_grey_images_use_the_mean_of_the_colour_rows():
    params = _pipe(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1).sample_params(
        (8, 3, 16, 16), generator=_gen(6)
    )
    grey = _images(8, 1)
    out_grey = AugmentPipe(hue=1).apply(grey, params)
    out_rgb = AugmentPipe(hue=1).apply(grey.expand(8, 3, 16, 16), params)
    torch.testing.assert_close(out_grey[:, 0], out_rgb.mean(dim=1), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Filter, noise, cutout


def test_filter_gains_act_on_dc_and_nyquist():
    gains = torch.tensor([[1.5, 1.0, 0.5, 2.0]], dtype=F64)
    constant = torch.full((1, 3, 24, 24), 0.7)
    checker = (torch.arange(24)[:, None] + torch.arange(24)[None, :]).remainder(2).float().mul(2).sub(1)
    checker = checker.expand(1, 3, 24, 24)
    pipe = AugmentPipe(imgfilter=1)
    # separable: DC sees band 0 twice (gain 1.5^2), the 2-D Nyquist pattern band 3 twice (2^2)
    torch.testing.assert_close(pipe.apply(constant, AugmentParams(filter_gains=gains)), 2.25 * constant)
    torch.testing.assert_close(pipe.apply(checker, AugmentParams(filter_gains=gains)), 4.0 * checker)


def test_single_band_amplification_keeps_the_expected_power():
    pipe = _pipe(imgfilter=1, imgfilter_bands=(0, 0, 1, 0))
    gains = pipe.sample_params((2000, 3, 8, 8), generator=_gen(7)).filter_gains
    power = torch.tensor(FILTER_BAND_POWER, dtype=F64)
    torch.testing.assert_close((gains.square() * power).sum(dim=1), torch.ones(2000, dtype=F64))
    assert torch.equal(gains[:, 0], gains[:, 1]) and torch.equal(gains[:, 0], gains[:, 3])
    log2_gain = torch.log2(gains[:, 2] / gains[:, 0])  # the drawn amplification 2^N(0, 1)
    assert log2_gain.std().item() == pytest.approx(1.0, abs=4 / math.sqrt(2 * 2000))


def test_noise_has_the_drawn_standard_deviation():
    out = AugmentPipe(noise=1).apply(
        torch.zeros(3, 3, 64, 64), AugmentParams(noise_std=torch.tensor([0.0, 0.1, 0.3], dtype=F64))
    )
    assert torch.equal(out[0], torch.zeros(3, 64, 64))
    assert out[1].std().item() == pytest.approx(0.1, rel=0.05)  # 12288 draws: relative error ~0.6%
    assert out[2].std().item() == pytest.approx(0.3, rel=0.05)
    sigma = _pipe(noise=1).sample_params((20000, 3, 8, 8), generator=_gen(8)).noise_std
    expected = 0.1 * math.sqrt(2 / math.pi)  # E|N(0, 0.1^2)|
    assert sigma.mean().item() == pytest.approx(expected, abs=4 * 0.1 * math.sqrt(1 - 2 / math.pi) / math.sqrt(20000))


@pytest.mark.parametrize(
    ("center", "cut"),
    [(0.5, slice(2, 6)), (0.5625, slice(3, 6))],  # 0.5625: pixels 2 and 6 lie exactly size/2 away and are kept
)
def test_cutout_zeroes_a_half_size_square(center, cut):
    params = AugmentParams(
        cutout_center=torch.tensor([[center, center]], dtype=F64), cutout_size=torch.tensor([0.5], dtype=F64)
    )
    out = AugmentPipe(cutout=1).apply(torch.ones(1, 3, 8, 8), params)
    expected = torch.ones(1, 3, 8, 8)
    expected[:, :, cut, cut] = 0  # pixel centres (i + 0.5) / 8 closer than 0.25 to the centre
    assert torch.equal(out, expected)


def test_params_must_match_the_batch():
    with pytest.raises(ValueError, match="AugmentParams.noise_std is for 2 samples, the batch has 3"):
        AugmentPipe(noise=1).apply(torch.zeros(3, 3, 8, 8), AugmentParams(noise_std=torch.ones(2, dtype=F64)))


# ---------------------------------------------------------------------------------------------------------------
# Gradients


def test_second_order_gradients_through_every_stage():
    pipe = AugmentPipe(xflip=1, rotate=1, brightness=1, hue=1, imgfilter=1, cutout=1)
    blit = [[-1.0, 0, 1], [0, 1, 0], [0, 0, 1]]  # exact path
    warp = _rotation(0.6)  # resampling path
    params = AugmentParams(
        geom=torch.tensor([blit, warp], dtype=F64),
        color=augment._luma_rotation(torch.tensor([0.4, -1.0], dtype=F64))
        @ augment._translate3d(torch.tensor([0.1, 0.0], dtype=F64)),
        filter_gains=torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.3, 0.7, 1.0, 2.0]], dtype=F64),
        cutout_center=torch.tensor([[0.2, 0.3], [0.5, 0.5]], dtype=F64),
        cutout_size=torch.tensor([0.5, 0.0], dtype=F64),
    )
    x = _images(2, 3, 6, 6, dtype=F64).requires_grad_(True)
    fn = lambda images: pipe.apply(images, params).tanh()  # a non-linear head makes the 2nd derivative non-zero
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("size", [16, 72])  # dense (<= 64 px) and convolution paths
def test_r1_penalty_through_the_pipe_reaches_the_discriminator(size):
    torch.manual_seed(9)
    pipe = augment_pipe("bgcfnc", p=1.0)
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    x = _images(4, 3, size, size).requires_grad_(True)
    logits = torch.nn.functional.conv2d(pipe(x), weight).square().mean(dim=(1, 2, 3))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)  # R1: d D(A(x)) / dx, x un-augmented
    (grad_w,) = torch.autograd.grad(grad.square().sum(), weight)
    assert torch.isfinite(grad_w).all() and grad_w.abs().sum().item() > 0


# ---------------------------------------------------------------------------------------------------------------
# Adaptive p


def _controller(p: float = 0.0, batch_size: int = 32, **kwargs) -> AdaptiveP:
    return AdaptiveP(augment_pipe("bgc", p=p), batch_size=batch_size, **kwargs)


def test_ada_step_size_is_batch_times_interval_over_ada_images():
    ada = _controller()
    assert ada.adjust_step == 32 * 4 / (500 * 1000) == 0.000256  # spec §11
    ada.accumulate(torch.ones(32, 1))  # r_t = 1 > 0.6
    for batch_idx in (1, 2, 3):
        assert ada.step(batch_idx) is None
    assert ada.step(4) == 1.0
    assert float(ada.pipe.p) == float(torch.tensor(0.000256, dtype=torch.float32))


def test_ada_moves_p_by_the_sign_of_rt_minus_target():
    ada = _controller(p=0.5, batch_size=64, interval=2, ada_kimg=100)
    step = 64 * 2 / 100_000
    ada.accumulate(torch.tensor([1.0, -1.0, -2.0, 3.0, -0.5]))  # r_t = -0.2 < 0.6
    assert ada.step(2) == pytest.approx(-0.2)
    assert float(ada.pipe.p) == pytest.approx(0.5 - step, abs=1e-7)
    ada.accumulate(torch.tensor([2.0, 1.0, 1.0, 1.0, -1.0]))  # r_t = 3/5 = target exactly: sign 0
    assert ada.step(4) == pytest.approx(0.6)
    assert float(ada.pipe.p) == pytest.approx(0.5 - step, abs=1e-7)


def test_ada_pools_every_reported_logit_until_the_update():
    ada = _controller(p=0.1)
    ada.accumulate(torch.tensor([[1.0], [1.0], [-1.0]]))  # Dmain
    assert ada.step(1) is None
    ada.accumulate(torch.tensor([[-1.0], [0.0]]))  # Dreg; a zero logit counts with sign 0
    assert ada.step(4) == pytest.approx(0.0)  # (1 + 1 - 1 - 1 + 0) / 5
    assert ada.step(8) is None  # accumulators were reset: nothing to update from
    assert float(ada.pipe.p) == pytest.approx(0.1 - 0.000256, abs=1e-7)


def test_ada_p_floors_at_zero_and_is_not_clamped_at_one():
    ada = _controller(p=0.0001)
    ada.accumulate(-torch.ones(8))
    ada.step(4)
    assert float(ada.pipe.p) == 0.0
    ada.accumulate(-torch.ones(8))
    ada.step(8)
    assert float(ada.pipe.p) == 0.0
    ada = _controller(p=0.9999)
    for batch_idx in (4, 8):
        ada.accumulate(torch.ones(8))
        ada.step(batch_idx)
    assert float(ada.pipe.p) == pytest.approx(0.9999 + 2 * 0.000256, abs=1e-6)  # > 1 (official issue #175)


def test_ada_state_dict_resumes_mid_interval():
    ada = _controller(p=0.2)
    ada.accumulate(torch.tensor([1.0, 1.0, 1.0, -1.0]))
    state = ada.state_dict()
    assert state == {"sign_sum": 2.0, "count": 4.0}
    resumed = _controller(p=0.2)
    resumed.load_state_dict(state)
    for controller in (ada, resumed):
        controller.accumulate(torch.tensor([1.0, 1.0]))
        assert controller.step(4) == pytest.approx(4 / 6)
    assert float(resumed.pipe.p) == float(ada.pipe.p) > 0.2
    assert resumed.state_dict() == {"sign_sum": 0.0, "count": 0.0}
