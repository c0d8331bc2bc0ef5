"""modulated_conv2d (StyleGAN2 Eq. 1-3) and fma."""

import math

import pytest
import torch

from common.ops import conv2d_resample, fma, modulated_conv2d, setup_filter

F4 = setup_filter([1, 3, 3, 1])


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("up, down, k, demodulate, with_noise", [
    (1, 1, 3, True, True), (2, 1, 3, True, True), (1, 2, 3, True, False), (1, 1, 1, False, False),
    (2, 1, 3, False, True), (1, 1, 3, True, False),
])
def test_fused_equals_non_fused(up, down, k, demodulate, with_noise):
    x, w, s = _rand(3, 8, 16, 16, seed=1), _rand(6, 8, k, k, seed=2), _rand(3, 8, seed=3) + 1
    h = 16 * up // down
    noise = _rand(3, 1, h, h, seed=4) if with_noise else None
    kwargs = dict(noise=noise, up=up, down=down, padding=k // 2, resample_filter=F4, demodulate=demodulate,
                  flip_weight=up == 1)
    fused = modulated_conv2d(x, w, s, fused_modconv=True, **kwargs)
    split = modulated_conv2d(x, w, s, fused_modconv=False, **kwargs)
    assert fused.shape == split.shape == (3, 6, h, h)
    torch.testing.assert_close(fused, split, rtol=1e-5, atol=1e-5)


def test_matches_per_sample_closed_form():
    """y[n] = conv(x[n], w * s[n] / sqrt(sum (w * s[n])^2 + 1e-8)) + noise, one sample at a time."""
    x, w, s = _rand(2, 4, 9, 9, seed=5, dtype=torch.float64), _rand(3, 4, 3, 3, seed=6, dtype=torch.float64), \
        _rand(2, 4, seed=7, dtype=torch.float64)
    noise = _rand(2, 1, 18, 18, seed=8, dtype=torch.float64)
    y = modulated_conv2d(x, w, s, noise=noise, up=2, padding=1, resample_filter=F4, fused_modconv=False)
    for n in range(2):
        wn = w * s[n].reshape(1, -1, 1, 1)
        wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        expected = conv2d_resample(x[n:n + 1], wn, F4.double(), up=2, padding=1) + noise[n]
        torch.testing.assert_close(y[n:n + 1], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_demodulated_weights_have_unit_norm(fused):
    """Read the effective per-sample weights off impulse responses: sample i has a unit impulse in channel i only."""
    c_in, c_out, k = 5, 4, 3
    w, style = _rand(c_out, c_in, k, k, seed=9, dtype=torch.float64), _rand(c_in, seed=10, dtype=torch.float64) * 3
    x = torch.zeros(c_in, c_in, 5, 5, dtype=torch.float64)
    x[torch.arange(c_in), torch.arange(c_in), 2, 2] = 1
    y = modulated_conv2d(x, w, style.expand(c_in, c_in), padding=1, fused_modconv=fused)
    effective = y[:, :, 1:4, 1:4].flip([2, 3]).transpose(0, 1)  # cross-correlation: response = flipped kernel
    norms = effective.square().sum(dim=[1, 2, 3])
    torch.testing.assert_close(norms, torch.ones(c_out, dtype=torch.float64), rtol=1e-7, atol=0)
    modulated = w * style.reshape(1, -1, 1, 1)
    torch.testing.assert_close(effective, modulated / modulated.square().sum(dim=[1, 2, 3], keepdim=True).sqrt())


def test_float16_pre_normalisation_avoids_overflow():
    """Weights x styles of ~1e5 overflow float16 (max 65504) unless pre-normalised; demodulation cancels the scale.

    Bound: K = C_in kh kw products and sums in float16, (K + 4) eps times the sum of |terms| of the normalised
    weights (each |w''| <= 1), i.e. (K + 4) eps * conv(|x|, |w''|).
    """
    x = _rand(2, 8, 8, 8, seed=11).half()
    w, s = _rand(4, 8, 3, 3, seed=12) * 1000, _rand(2, 8, seed=13) * 100
    y = modulated_conv2d(x, w, s, padding=1, fused_modconv=False)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    ref = modulated_conv2d(x.double(), w.double(), s.double(), padding=1, fused_modconv=False)
    wn = w.double().unsqueeze(0) * s.double().reshape(2, 1, -1, 1, 1)
    wn = wn / wn.square().sum(dim=[2, 3, 4], keepdim=True).sqrt()
    magnitude = torch.cat([torch.nn.functional.conv2d(x[n:n + 1].double().abs(), wn[n].abs(), padding=1)
                           for n in range(2)])
    assert ((y.double() - ref).abs() <= (8 * 9 + 4) * torch.finfo(torch.float16).eps * magnitude + 1e-30).all()


@pytest.mark.parametrize("fused, demodulate, up", [(True, True, 1), (False, True, 2), (False, False, 1),
                                                   (True, False, 2)])
def test_gradcheck_and_gradgradcheck(fused, demodulate, up):
    x = _rand(2, 3, 5, 5, seed=14, dtype=torch.float64).requires_grad_(True)
    w = _rand(2, 3, 3, 3, seed=15, dtype=torch.float64).requires_grad_(True)
    s = (_rand(2, 3, seed=16, dtype=torch.float64) + 1).requires_grad_(True)
    noise = _rand(2, 1, 5 * up, 5 * up, seed=17, dtype=torch.float64)
    fn = lambda x, w, s: modulated_conv2d(x, w, s, noise=noise, up=up, padding=1, resample_filter=F4,
                                          demodulate=demodulate, fused_modconv=fused)
    assert torch.autograd.gradcheck(fn, (x, w, s))
    assert torch.autograd.gradgradcheck(fn, (x, w, s), fast_mode=True)


def test_fma_values_and_broadcast_gradients():
    a = _rand(2, 3, 4, 4, seed=18, dtype=torch.float64).requires_grad_(True)
    b = _rand(2, 3, 1, 1, seed=19, dtype=torch.float64).requires_grad_(True)
    c = _rand(2, 1, 4, 4, seed=20, dtype=torch.float64).requires_grad_(True)
    torch.testing.assert_close(fma(a, b, c), a * b + c)
    assert torch.autograd.gradcheck(fma, (a, b, c)) and torch.autograd.gradgradcheck(fma, (a, b, c))
    grads = torch.autograd.grad(fma(a, b, c).sum(), (a, b, c))
    assert [g.shape for g in grads] == [a.shape, b.shape, c.shape]


def test_shape_errors():
    with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
        modulated_conv2d(torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 3, 3), torch.zeros(2, 4))
    assert math.isclose(float(modulated_conv2d(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1),
                                               torch.ones(1, 1))), 1.0, rel_tol=1e-6)
