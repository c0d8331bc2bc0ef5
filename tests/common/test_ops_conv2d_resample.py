"""conv2d_resample against a literal scipy definition (zero insertion, padding, FIR, convolution, subsampling)."""

import numpy as np
import pytest
import scipy.signal
import torch

from common.ops import conv2d_resample, setup_filter


def conv2d_resample_scipy(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """y = down_s(conv_w(conv_f(pad_P(up_z(x))))) with P and the filter applications as in the official code."""
    x, w = x.numpy(), w.numpy()
    f = None if f is None else f.numpy()
    fh, fw = (1, 1) if f is None else f.shape
    x0, x1, y0, y1 = padding
    if up > 1:
        x0, x1, y0, y1 = x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2, y0 + (fh + up - 1) // 2, y1 + (fh - up) // 2
    if down > 1:
        x0, x1 = x0 + (fw - down + 1) // 2, x1 + (fw - down) // 2
        y0, y1 = y0 + (fh - down + 1) // 2, y1 + (fh - down) // 2
    n, c, h, wd = x.shape
    u = np.zeros((n, c, h * up, wd * up))
    u[:, :, ::up, ::up] = x * (up * up if up > 1 else 1)
    u = np.pad(u, [(0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))])
    u = u[:, :, max(-y0, 0):u.shape[2] - max(-y1, 0), max(-x0, 0):u.shape[3] - max(-x1, 0)]
    fir = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    if up > 1:
        u = np.array([[fir(plane, f, mode="valid") for plane in sample] for sample in u])
    wconv = scipy.signal.correlate2d if flip_weight else scipy.signal.convolve2d
    out_per_group, in_per_group = w.shape[0] // groups, w.shape[1]
    y = np.array([[sum(wconv(u[i, (o // out_per_group) * in_per_group + j], w[o, j], mode="valid")
                       for j in range(in_per_group)) for o in range(w.shape[0])] for i in range(n)])
    if down > 1:
        y = np.array([[fir(plane, f, mode="valid")[::down, ::down] for plane in sample] for sample in y])
    return torch.from_numpy(y)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


F4 = setup_filter([1, 3, 3, 1]).double()
F3 = setup_filter([1, 2, 1]).double()
CASES = [  # (up, down, kernel, padding, groups, flip_weight, flip_filter, filter, size)
    (1, 1, 3, (1, 1, 1, 1), 1, True, False, None, 7),
    (1, 1, 3, (0, 2, 1, 0), 2, False, False, None, 7),
    (1, 1, 3, (-1, -1, -1, -1), 1, True, False, None, 7),
    (2, 1, 3, (1, 1, 1, 1), 1, False, False, F4, 7),
    (2, 1, 3, (1, 1, 1, 1), 2, True, True, F4, 16),
    (2, 1, 1, (0, 0, 0, 0), 1, True, False, F4, 7),
    (2, 1, 3, (0, 2, -1, 1), 1, True, False, F3, 7),
    (4, 1, 3, (1, 1, 1, 1), 1, False, False, F4, 5),
    (1, 2, 3, (1, 1, 1, 1), 1, True, False, F4, 8),
    (1, 2, 3, (1, 1, 1, 1), 2, False, True, F4, 16),
    (1, 2, 1, (0, 0, 0, 0), 1, True, False, F4, 16),
    (1, 4, 3, (2, 1, 0, 3), 1, True, False, F3, 12),
    (2, 2, 3, (1, 1, 1, 1), 1, True, False, F4, 16),
    (2, 2, 1, (0, 1, 1, 0), 2, False, False, F3, 7),
]


@pytest.mark.parametrize("up, down, k, padding, groups, flip_weight, flip_filter, f, size", CASES)
def test_conv2d_resample_matches_scipy_definition(up, down, k, padding, groups, flip_weight, flip_filter, f, size):
    x, w = _rand(2, 4, size, size, seed=1), _rand(6, 4 // groups, k, k, seed=2)
    expected = conv2d_resample_scipy(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
    out = conv2d_resample(x, w, f, up=up, down=down, padding=list(padding), groups=groups, flip_weight=flip_weight,
                          flip_filter=flip_filter)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-11, atol=1e-11)
    xcl = x.contiguous(memory_format=torch.channels_last)  # same numbers, memory format kept
    out_cl = conv2d_resample(xcl, w, f, up=up, down=down, padding=list(padding), groups=groups,
                             flip_weight=flip_weight, flip_filter=flip_filter)
    torch.testing.assert_close(out_cl, expected, rtol=1e-11, atol=1e-11)
    assert out_cl.is_contiguous(memory_format=torch.channels_last) or out_cl.shape[1] == 1
    # CPU: a resampling k x k convolution of a >= 16x16 input stays in the NHWC layout it ran in
    nhwc_on_cpu = (up > 1 or down > 1) and k > 1 and size >= 16
    assert out.is_contiguous(memory_format=torch.channels_last if nhwc_on_cpu else torch.contiguous_format)


def test_int_padding_and_stylegan_shapes():
    x, w = _rand(2, 4, 8, 8, seed=3), _rand(5, 4, 3, 3, seed=4)
    assert conv2d_resample(x, w, F4, up=2, padding=1).shape == (2, 5, 16, 16)
    assert conv2d_resample(x, w, F4, down=2, padding=1).shape == (2, 5, 4, 4)
    assert conv2d_resample(x, w, padding=1).shape == (2, 5, 8, 8)
    torch.testing.assert_close(conv2d_resample(x, w, F4, up=2, padding=1),
                               conv2d_resample_scipy(x, w, F4, 2, 1, (1, 1, 1, 1), 1, True, False))


@pytest.mark.parametrize("up, down, k, groups, size", [(2, 1, 3, 2, 5), (1, 2, 3, 1, 6), (2, 1, 1, 1, 5),
                                                       (1, 2, 1, 2, 6), (1, 1, 3, 1, 5), (2, 1, 3, 1, 16),
                                                       (1, 2, 3, 2, 16)])
def test_gradcheck_and_gradgradcheck(up, down, k, groups, size):
    """size 16 also covers the channels_last evaluation used for larger inputs on CPU."""
    x = _rand(1, 2, size, size, seed=5).requires_grad_(True)
    w = _rand(2, 2 // groups, k, k, seed=6).requires_grad_(True)
    fn = lambda x, w: conv2d_resample(x, w, F4, up=up, down=down, padding=k // 2, groups=groups,
                                      flip_weight=up == 1)
    fast = size > 8
    assert torch.autograd.gradcheck(fn, (x, w), fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=fast)


def test_invalid_arguments():
    x, w = torch.zeros(1, 4, 8, 8), torch.zeros(2, 4, 3, 3)
    with pytest.raises(ValueError, match="needs a filter"):
        conv2d_resample(x, w, None, up=2)
    with pytest.raises(ValueError, match="do not match groups=2"):
        conv2d_resample(x, w, F4, groups=2)
    with pytest.raises(ValueError, match="ints >= 1"):
        conv2d_resample(x, w, F4, down=0)
