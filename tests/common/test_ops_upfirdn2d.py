"""upfirdn2d and its wrappers against an independent scipy definition, plus gradients and the CUDA-path adjoint."""

import itertools

import numpy as np
import pytest
import scipy.signal
import torch

from common.ops import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from common.ops import resample as resample_module


def upfirdn2d_scipy(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Literal definition: insert zeros, pad (negative = crop), 2-D convolution ('valid'), keep every down-th."""
    x, f = np.asarray(x, dtype=np.float64), np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    (up_x, up_y), (down_x, down_y), (x0, x1, y0, y1) = up, down, pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up_y, w * up_x))
    u[:, :, ::up_y, ::up_x] = x
    u = np.pad(u, [(0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))])
    u = u[:, :, max(-y0, 0):u.shape[2] - max(-y1, 0), max(-x0, 0):u.shape[3] - max(-x1, 0)]
    filt = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    out = np.array([[filt(u[i, j], f, mode="valid")[::down_y, ::down_x] for j in range(c)] for i in range(n)])
    return torch.from_numpy(out * gain)


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


FILTERS = {
    "even 4x4 (outer product)": setup_filter([1, 3, 3, 1]).double(),
    "odd 3x3 random": _rand(3, 3, seed=1),
    "3x4 random": _rand(3, 4, seed=2),
    "separable 4 taps": setup_filter([1, 3, 3, 1], separable=True).double(),
    "separable 5 taps": _rand(5, seed=3),
}
GEOMETRIES = [  # (up, down, padding [x0, x1, y0, y1])
    ((1, 1), (1, 1), (0, 0, 0, 0)),
    ((2, 2), (1, 1), (2, 1, 2, 1)),
    ((4, 4), (1, 1), (3, 2, 1, 4)),
    ((1, 1), (2, 2), (1, 1, 1, 1)),
    ((1, 1), (4, 4), (2, 2, 0, 3)),
    ((2, 2), (2, 2), (1, 2, 2, 1)),
    ((4, 4), (2, 2), (0, 0, 0, 0)),
    ((2, 2), (4, 4), (3, 3, 3, 3)),
    ((4, 1), (1, 2), (2, 1, 0, 1)),
    ((1, 2), (4, 1), (1, 0, 2, 2)),
    ((2, 2), (1, 1), (-1, 3, 2, -2)),  # negative padding crops
    ((1, 1), (2, 2), (-1, -1, -2, 0)),
    ((4, 4), (4, 4), (-3, -2, 5, -1)),
]


@pytest.mark.parametrize("fname", list(FILTERS))
@pytest.mark.parametrize("up, down, pad", GEOMETRIES)
def test_upfirdn2d_matches_scipy_definition(fname, up, down, pad):
    f = FILTERS[fname]
    x = _rand(2, 3, 9, 7, seed=4)
    for flip_filter, gain in [(False, 1.0), (True, 2.5)]:
        expected = upfirdn2d_scipy(x, f, up, down, pad, flip_filter, gain)
        out = upfirdn2d(x, f, up=list(up), down=list(down), padding=list(pad), flip_filter=flip_filter, gain=gain)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_crop_reaching_into_padding():
    """Padding is applied before cropping, so a crop larger than the (upsampled) image is still valid."""
    x, f = _rand(1, 2, 8, 1, seed=5), _rand(1, 1, seed=6)
    out = upfirdn2d(x, f, up=(4, 2), down=(4, 2), padding=[-2, 0, -2, -1])
    torch.testing.assert_close(out, upfirdn2d_scipy(x, f, (4, 2), (4, 2), (-2, 0, -2, -1)), rtol=1e-12, atol=1e-12)


def test_scalar_arguments_and_identity_filter():
    x = _rand(2, 3, 6, 5, seed=7)
    torch.testing.assert_close(upfirdn2d(x, None), x)
    torch.testing.assert_close(upfirdn2d(x, FILTERS["odd 3x3 random"], up=2, down=2, padding=1),
                               upfirdn2d_scipy(x, FILTERS["odd 3x3 random"], (2, 2), (2, 2), (1, 1, 1, 1)))
    torch.testing.assert_close(upfirdn2d(x, None, padding=[1, 2]), upfirdn2d_scipy(x, [[1.0]], pad=(1, 1, 2, 2)))


def test_setup_filter_outer_product_over_64():
    f = setup_filter([1, 3, 3, 1])
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    torch.testing.assert_close(f, torch.outer(taps, taps) / 64)
    assert f.sum().item() == pytest.approx(1.0, abs=1e-7)


def test_setup_filter_options():
    taps = [1.0, 2.0, 4.0]
    assert setup_filter(list(range(1, 9))).shape == (8,)  # >= 8 taps stay separable
    assert setup_filter(list(range(1, 9)), separable=False).shape == (8, 8)
    torch.testing.assert_close(setup_filter(taps, separable=True), torch.tensor(taps) / 7)
    torch.testing.assert_close(setup_filter(taps, normalize=False), torch.outer(torch.tensor(taps), torch.tensor(taps)))
    torch.testing.assert_close(setup_filter(taps, flip_filter=True), setup_filter(taps).flip([0, 1]))
    assert setup_filter(taps, gain=4).sum().item() == pytest.approx(4.0)  # 2-D: gain ** (2 / 2)
    assert setup_filter(taps, gain=4, separable=True).sum().item() == pytest.approx(2.0)  # per axis: gain ** (1 / 2)
    torch.testing.assert_close(setup_filter(None), torch.ones(1, 1))
    torch.testing.assert_close(setup_filter(np.array([[1.0, 1.0], [1.0, 1.0]])), torch.full((2, 2), 0.25))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        setup_filter(torch.ones(2, 2, 2))


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1, 1], list(range(1, 13))])
def test_wrapper_paddings_follow_the_spec(taps):
    """upsample2d: [(fw+up-1)//2, (fw-up)//2]; downsample2d: [(fw-down+1)//2, (fw-down)//2]; filter2d: same size."""
    f = setup_filter(taps).double()
    fw = len(taps)
    x = _rand(2, 3, 8, 6, seed=8)
    for up in (2, 4):
        pad = ((fw + up - 1) // 2, (fw - up) // 2) * 2
        pad = (pad[0], pad[1], pad[0], pad[1])
        expected = upfirdn2d_scipy(x, f, (up, up), (1, 1), pad, gain=up * up)
        out = upsample2d(x, f, up=up)
        if fw >= up:
            assert out.shape[2:] == (8 * up, 6 * up)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    pad = ((fw - 1) // 2, (fw - 2) // 2, (fw - 1) // 2, (fw - 2) // 2)
    out = downsample2d(x, f)
    assert out.shape[2:] == (4, 3)
    torch.testing.assert_close(out, upfirdn2d_scipy(x, f, (1, 1), (2, 2), pad), rtol=1e-12, atol=1e-12)
    out = filter2d(x, f, gain=3)
    assert out.shape == x.shape
    pad = (fw // 2, (fw - 1) // 2, fw // 2, (fw - 1) // 2)
    torch.testing.assert_close(out, upfirdn2d_scipy(x, f, pad=pad, gain=3), rtol=1e-12, atol=1e-12)


def test_stylegan_filter_paddings():
    """The [1, 3, 3, 1] numbers from the spec: upsample2d pads [2, 1], downsample2d [1, 1]."""
    f = setup_filter([1, 3, 3, 1]).double()
    x = _rand(1, 2, 6, 6, seed=9)
    torch.testing.assert_close(upsample2d(x, f), upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4))
    torch.testing.assert_close(downsample2d(x, f), upfirdn2d(x, f, down=2, padding=[1, 1, 1, 1]))
    torch.testing.assert_close(upsample2d(x, f, padding=1), upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4))


def test_constant_image_keeps_its_level():
    f = setup_filter([1, 3, 3, 1])
    x = torch.full((1, 1, 8, 8), 0.5)
    assert torch.allclose(upsample2d(x, f)[:, :, 2:-2, 2:-2], torch.tensor(0.5))
    assert torch.allclose(downsample2d(x, f)[:, :, 1:-1, 1:-1], torch.tensor(0.5))


def test_separable_equals_outer_product():
    x = _rand(2, 3, 10, 9, seed=10)
    taps = _rand(6, seed=11).abs() + 0.1  # positive: normalising by a sum near zero would amplify float32 rounding
    sep, full = setup_filter(taps, separable=True).double(), setup_filter(taps, separable=False).double()
    for kwargs in [dict(up=2, padding=[3, 2, 1, 3]), dict(down=2, padding=2), dict(up=[2, 1], down=[1, 2])]:
        torch.testing.assert_close(upfirdn2d(x, sep, gain=1.5, **kwargs), upfirdn2d(x, full, gain=1.5, **kwargs))


def test_channels_last_is_kept():
    f = setup_filter([1, 3, 3, 1])
    x = _rand(2, 5, 16, 16, seed=12, dtype=torch.float32)
    xcl = x.contiguous(memory_format=torch.channels_last)
    for op in (upsample2d, downsample2d, filter2d):
        out = op(xcl, f)
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, op(x, f), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward_and_backward(dtype):
    """Error bound of a K-term sum in the low precision: (K + 2) eps * sum |terms| (input rounding excluded)."""
    f = setup_filter([1, 3, 3, 1])
    eps = torch.finfo(dtype).eps
    x = _rand(2, 4, 8, 8, seed=13, dtype=torch.float32).to(dtype).requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    for op, kwargs in [(upsample2d, {}), (downsample2d, {}), (upfirdn2d, dict(up=2, down=2, padding=1))]:
        out, ref = op(x, f, **kwargs), op(x64, f.double(), **kwargs)
        assert out.dtype == dtype
        bound = (16 + 2) * eps * op(x64.detach().abs(), f.double().abs(), **kwargs)
        assert ((out.double() - ref).abs() <= bound + 1e-30).all()
        dy = _rand(*out.shape, seed=14, dtype=torch.float32).to(dtype)
        (gx,), (gx64,) = torch.autograd.grad(out, x, dy), torch.autograd.grad(ref, x64, dy.double())
        bound = (16 + 2) * eps * torch.autograd.grad(op(x64, f.double().abs(), **kwargs), x64, dy.double().abs())[0]
        assert ((gx.double() - gx64).abs() <= bound + 1e-30).all()


GRAD_CASES = [
    ("up2 4x4", dict(up=2, padding=[2, 1, 2, 1]), FILTERS["even 4x4 (outer product)"]),
    ("down2 flip", dict(down=2, padding=1, flip_filter=True), FILTERS["3x4 random"]),
    ("up2 down2 separable crop", dict(up=2, down=2, padding=[-1, 2, 1, -1], gain=2.0), FILTERS["separable 5 taps"]),
    ("up4 x / down2 y", dict(up=[4, 1], down=[1, 2], padding=[1, 2, 0, 1]), FILTERS["odd 3x3 random"]),
]


@pytest.mark.parametrize("name, kwargs, f", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_upfirdn2d_gradcheck_and_gradgradcheck(name, kwargs, f):
    x = _rand(1, 2, 7, 6, seed=15).requires_grad_(True)
    fg = f.clone().requires_grad_(True)  # the reference path also differentiates w.r.t. the filter
    fn = lambda x, fg: upfirdn2d(x, fg, **kwargs)
    assert torch.autograd.gradcheck(fn, (x, fg))
    assert torch.autograd.gradgradcheck(fn, (x, fg))


@pytest.mark.parametrize("op", [upsample2d, downsample2d, filter2d])
def test_wrappers_gradcheck_and_gradgradcheck(op):
    f = setup_filter([1, 3, 3, 1]).double()
    x = _rand(1, 2, 6, 6, seed=16).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: op(x, f), (x,))
    assert torch.autograd.gradgradcheck(lambda x: op(x, f), (x,))


def test_cuda_backward_is_the_adjoint():
    """The CUDA path differentiates with _Geometry.adjoint: <upfirdn2d(x), dy> == <x, adjoint(dy)> for any geometry."""
    cases = itertools.product([(1, 1), (2, 1), (4, 2)], [(1, 1), (1, 2), (2, 4)], [(0, 0, 0, 0), (2, -1, 3, 1)],
                              [False, True])
    for (up, down, pad, flip), f in itertools.product(cases, [FILTERS["3x4 random"], FILTERS["separable 5 taps"]]):
        geo = resample_module._Geometry(*up, *down, *pad, flip_filter=flip, gain=1.5)
        x = _rand(1, 2, 9, 8, seed=17)
        y = resample_module._upfirdn2d_ref(x, f, geo)
        dy = _rand(*y.shape, seed=18)
        fw, fh = resample_module.filter_size(f)
        dx = resample_module._upfirdn2d_ref(dy, f, geo.adjoint((9, 8), tuple(y.shape[2:]), fh, fw))
        assert dx.shape == x.shape
        torch.testing.assert_close((y * dy).sum(), (x * dx).sum(), rtol=1e-12, atol=1e-12)


def test_cuda_autograd_function_with_an_emulated_kernel(monkeypatch):
    """Run the CUDA path's autograd.Function on CPU, with the plugin replaced by the reference computation."""

    def fake_kernel(op):
        assert op == "upfirdn2d"

        def run(x, f, up_x, up_y, down_x, down_y, x0, x1, y0, y1, flip, gain):
            geo = resample_module._Geometry(up_x, up_y, down_x, down_y, x0, x1, y0, y1, flip, gain)
            return resample_module._upfirdn2d_ref(x, f, geo)

        return run

    monkeypatch.setattr(resample_module.extension, "kernel", fake_kernel)
    for f, pad in [(FILTERS["3x4 random"], (2, 1, -1, 3)), (FILTERS["separable 5 taps"], (1, 2, 2, 1))]:
        geo = resample_module._Geometry(2, 2, 1, 2, *pad, flip_filter=False, gain=2.0)
        x = _rand(1, 2, 6, 5, seed=19).requires_grad_(True)
        fn = lambda x, f=f, geo=geo: resample_module._Upfirdn2dCuda.apply(x, f, geo)
        torch.testing.assert_close(fn(x), resample_module._upfirdn2d_ref(x, f, geo))
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_invalid_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="4-D"):
        upfirdn2d(torch.zeros(4, 4), None)
    with pytest.raises(ValueError, match="up must be"):
        upfirdn2d(x, None, up=0)
    with pytest.raises(ValueError, match="smaller than"):
        upfirdn2d(x, torch.ones(3, 3), padding=-2)
    with pytest.raises(ValueError, match="padding must be"):
        upfirdn2d(x, None, padding=[1, 2, 3])
