"""bias_act against closed-form definitions (numpy), gradients of first and second order, half precision."""

import math

import numpy as np
import pytest
import torch

from common.ops import ACTIVATIONS, bias_act
from common.ops import activation as activation_module

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _sigmoid(u):
    return 1 / (1 + np.exp(-u))


# act(u, alpha), independent of torch; official defaults: gain sqrt(2) for relu/lrelu/swish, alpha 0.2 for lrelu.
CLOSED_FORM = {
    "linear": (lambda u, a: u, 1.0, 0.0),
    "relu": (lambda u, a: np.maximum(u, 0), math.sqrt(2), 0.0),
    "lrelu": (lambda u, a: np.where(u > 0, u, a * u), math.sqrt(2), 0.2),
    "tanh": (lambda u, a: np.tanh(u), 1.0, 0.0),
    "sigmoid": (lambda u, a: _sigmoid(u), 1.0, 0.0),
    "elu": (lambda u, a: np.where(u > 0, u, np.exp(u) - 1), 1.0, 0.0),
    "selu": (lambda u, a: SELU_SCALE * np.where(u > 0, u, SELU_ALPHA * (np.exp(u) - 1)), 1.0, 0.0),
    "softplus": (lambda u, a: np.log1p(np.exp(u)), 1.0, 0.0),
    "swish": (lambda u, a: u * _sigmoid(u), math.sqrt(2), 0.0),
}


def _rand(*shape, seed=0, scale=1.0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def test_table_covers_the_official_activations():
    assert set(ACTIVATIONS) == set(CLOSED_FORM)
    for name, (_, gain, alpha) in CLOSED_FORM.items():
        assert ACTIVATIONS[name].def_gain == pytest.approx(gain) and ACTIVATIONS[name].def_alpha == alpha


@pytest.mark.parametrize("act", list(CLOSED_FORM))
def test_defaults_match_closed_form(act):
    func, gain, alpha = CLOSED_FORM[act]
    x, b = _rand(3, 4, 5, 6, seed=1, scale=2), _rand(4, seed=2)
    expected = gain * func(x.numpy() + b.numpy().reshape(1, -1, 1, 1), alpha)
    np.testing.assert_allclose(bias_act(x, b, act=act).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", list(CLOSED_FORM))
def test_explicit_alpha_gain_clamp_and_dim(act):
    func = CLOSED_FORM[act][0]
    x, b = _rand(2, 3, 7, seed=3, scale=2), _rand(7, seed=4)
    y = bias_act(x, b, dim=2, act=act, alpha=0.3, gain=0.7, clamp=0.5)
    expected = np.clip(0.7 * func(x.numpy() + b.numpy().reshape(1, 1, -1), 0.3), -0.5, 0.5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert (y.abs() == 0.5).any()  # the clamp is active in this draw


def test_fully_connected_and_no_bias():
    x, b = _rand(5, 6, seed=5), _rand(6, seed=6)
    np.testing.assert_allclose(bias_act(x, b, act="lrelu").numpy(),
                               math.sqrt(2) * np.where(x + b > 0, x + b, 0.2 * (x + b)), rtol=1e-12)
    np.testing.assert_allclose(bias_act(x, None, act="tanh", gain=2.0).numpy(), 2 * np.tanh(x.numpy()), rtol=1e-12)


def test_linear_identity_is_a_no_op_and_inputs_are_not_modified():
    x, b = _rand(2, 3, 4, 4, seed=7), _rand(3, seed=8)
    assert bias_act(x) is x
    x_copy, b_copy = x.clone(), b.clone()
    for act in CLOSED_FORM:
        bias_act(x, b, act=act, clamp=1.0)
        bias_act(x, None, act=act, gain=1.0)
    assert torch.equal(x, x_copy) and torch.equal(b, b_copy)


def test_channels_last_is_kept():
    x = _rand(2, 8, 5, 5, seed=9, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    b = _rand(8, seed=10, dtype=torch.float32)
    y = bias_act(x, b, act="lrelu", clamp=1.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, bias_act(x.contiguous(), b, act="lrelu", clamp=1.0))


@pytest.mark.parametrize("act", list(CLOSED_FORM))
@pytest.mark.parametrize("clamp", [None, 0.8])
def test_gradcheck_and_gradgradcheck(act, clamp):
    x = _rand(2, 3, 4, seed=11, scale=1.5).requires_grad_(True)
    b = _rand(3, seed=12).requires_grad_(True)
    fn = lambda x, b: bias_act(x, b, act=act, clamp=clamp)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    fn_dim = lambda x: bias_act(x, None, dim=2, act=act, gain=0.5, clamp=clamp)
    assert torch.autograd.gradcheck(fn_dim, (x,)) and torch.autograd.gradgradcheck(fn_dim, (x,))


def test_gradients_match_autograd_of_the_composite():
    """First and second derivatives equal those of the same math written as plain autograd ops."""
    x = _rand(3, 4, 5, seed=13, scale=2).requires_grad_(True)
    b = _rand(4, seed=14).requires_grad_(True)
    composites = {
        "lrelu": lambda u: torch.nn.functional.leaky_relu(u, 0.2) * math.sqrt(2),
        "swish": lambda u: u * torch.sigmoid(u) * math.sqrt(2),
        "softplus": torch.nn.functional.softplus,
        "selu": torch.nn.functional.selu,
    }
    for act, composite in composites.items():
        grads = []
        ours = lambda act=act: bias_act(x, b, act=act, clamp=2.0)
        theirs = lambda composite=composite: composite(x + b.reshape(1, -1, 1)).clamp(-2, 2)
        for fn in (ours, theirs):
            y = fn()
            gx, gb = torch.autograd.grad((y * y.detach().sign()).sum(), (x, b), create_graph=True)
            grads.append([gx, gb, *torch.autograd.grad((gx * gx).sum() + gb.sum(), (x, b), allow_unused=True)])
        for ours, theirs in zip(*grads):
            if theirs is None:  # piecewise linear: second derivative zero almost everywhere
                assert ours is None or torch.count_nonzero(ours) == 0
            else:
                torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "softplus"])
def test_half_precision(act, dtype):
    """Forward and gradient within a few roundings: each of bias add, activation, gain and clamp rounds once."""
    eps = torch.finfo(dtype).eps
    x = _rand(2, 8, 4, 4, seed=15, scale=2, dtype=torch.float32).to(dtype).requires_grad_(True)
    b = _rand(8, seed=16, dtype=torch.float32).to(dtype)
    x64 = x.detach().double().requires_grad_(True)
    y, ref = bias_act(x, b, act=act, clamp=2.0), bias_act(x64, b.double(), act=act, clamp=2.0)
    assert y.dtype == dtype
    gain = ACTIVATIONS[act].def_gain
    bound = 4 * eps * (ref.abs() + gain * (x64.detach().abs() + b.double().abs().reshape(-1, 1, 1)))
    assert ((y.double() - ref).abs() <= bound).all()
    dy = _rand(*y.shape, seed=17, dtype=torch.float32).to(dtype)
    (gx,), (gx64,) = torch.autograd.grad(y, x, dy), torch.autograd.grad(ref, x64, dy.double())
    assert ((gx.double() - gx64).abs() <= 4 * eps * gain * 2 * dy.double().abs() + 1e-30).all()


def test_cuda_autograd_functions_with_an_emulated_kernel(monkeypatch):
    """The CUDA path's argument passing and double-backward plumbing, with the kernel emulated by the reference."""
    codes = {info.code: name for name, info in ACTIVATIONS.items()}
    calls = []

    def fake_kernel(op):
        def run(x, b, xref, yref, dy, mode, dim, code, alpha, gain, clamp):
            calls.append(mode)
            spec = activation_module._Spec(codes[code], dim, alpha, gain, None if clamp < 0 else clamp, "ref")
            return activation_module._kernel(mode, x, b, xref, yref, dy, spec)

        return run

    monkeypatch.setattr(activation_module.extension, "kernel", fake_kernel)
    x = _rand(2, 3, 4, seed=18, scale=1.5).requires_grad_(True)
    b = _rand(3, seed=19).requires_grad_(True)
    for act in ("lrelu", "tanh", "swish"):
        spec = activation_module._Spec(act, 1, ACTIVATIONS[act].def_alpha, ACTIVATIONS[act].def_gain, 0.8, "cuda")
        fn = lambda x, b, spec=spec: activation_module._BiasAct.apply(x, b, spec)
        torch.testing.assert_close(fn(x, b), bias_act(x, b, act=act, clamp=0.8))
        assert torch.autograd.gradcheck(fn, (x, b)) and torch.autograd.gradgradcheck(fn, (x, b))
    assert set(calls) == {0, 1, 2}


def test_invalid_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="clamp must be"):
        bias_act(x, clamp=-1)
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        bias_act(x, torch.zeros(2))
