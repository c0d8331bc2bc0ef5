"""DynamicD's masked D (dynamicd.width): the spec §9 parity facts, asserted deterministically.

The official genforce/dynamicd D was compared on CPU with the same state dict and inputs (README, "Parity"): first-k
and random masks (the official numpy permutations replayed) at res 32 and 64 agree to float rounding (max |dlogit|
6.6e-7, the plain D pair's own difference); these tests pin the same semantics without the official code.
"""

from __future__ import annotations

import math

import pytest
import torch

from common.stylegan2.networks import Discriminator
from dynamicd.width import WidthController, active_weights, dynamic_layers, install, occupy_ratio, uninstall


def _d(res: int = 32, base: int = 2048, cmax: int = 128) -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(0, res, 3, channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=None)


@pytest.fixture(scope="module")
def paper256() -> Discriminator:
    return Discriminator(0, 256, 3, channel_base=16384, channel_max=512)


def test_full_width_equals_plain_stylegan2_exactly():
    D = _d()
    x = torch.randn(8, 3, 32, 32)
    plain = D(x, None)
    keys = list(D.state_dict())
    for random in (False, True):
        install(D, WidthController(1.0, random))
        assert torch.equal(D(x, None), plain)
    assert list(D.state_dict()) == keys  # no parameter or buffer added: checkpoints interchange
    uninstall(D)
    assert all(getattr(m, "weight_hook", None) is None for m in D.modules())


def test_first_k_is_deterministic_and_random_subsets_are_not():
    D, x = _d(), torch.randn(8, 3, 32, 32)
    install(D, WidthController(0.5, randomly_select=False))
    assert torch.equal(D(x, None), D(x, None))
    controller = WidthController(0.5, randomly_select=True)
    install(D, controller)
    a, b = D(x, None), D(x, None)
    assert (a - b).abs().max() > 1e-3  # a new sub-network per call
    controller.reseed(0, 0, 7)
    c = D(x, None)
    controller.reseed(0, 0, 7)
    assert torch.equal(D(x, None), c)  # the same (seed, rank, iteration) draws the same masks


def test_gradients_outside_the_kept_channels_are_exactly_zero():
    D, x = _d(), torch.randn(8, 3, 32, 32)
    install(D, WidthController(0.5, randomly_select=False))
    D(x, None).square().sum().backward()
    grad = D.b16.conv0.weight.grad  # 128 -> 128, 3x3: keeps [:64, :64]
    assert grad[:64, :64].abs().sum() > 0
    assert grad[64:].abs().max() == 0 and grad[:, 64:].abs().max() == 0
    fc = D.b4.fc.weight.grad  # 128 * 16 inputs in whole channels of 16
    assert fc[:64, : 64 * 16].abs().sum() > 0 and fc[64:].abs().max() == 0 and fc[:, 64 * 16 :].abs().max() == 0
    assert D.b4.out.weight.grad[:, 64:].abs().max() == 0  # out keeps its outputs, masks its inputs

    D.zero_grad()
    hooks = install(D, WidthController(0.5, randomly_select=True))
    layer = D.b16.conv0
    used = hooks["b16.conv0"](layer, layer.weight.detach()).abs().sum(dim=[2, 3])
    assert (used.sum(1) > 0).sum() == 64 and (used.sum(0) > 0).sum() == 64  # a random 64 outputs and 64 inputs
    assert not torch.equal(used > 0, torch.zeros_like(used).index_fill_(0, torch.arange(64), 1) > 0)
    conv = hooks["b4.conv"](D.b4.conv, D.b4.conv.weight.detach()).abs().sum(dim=[0, 2, 3])
    assert conv[-1] > 0 and (conv[:-1] > 0).sum() == 64  # 128 + 1 inputs: the minibatch-std channel always kept
    D(x, None).square().sum().backward()
    grad = layer.weight.grad.abs().sum(dim=[2, 3])
    # in/out subsets are independent per layer (official): only kept outputs that conv1 also reads get gradient
    assert 0 < (grad.sum(1) > 0).sum() <= 64 and 0 < (grad.sum(0) > 0).sum() <= 64


def test_effective_gains_are_recomputed_for_the_kept_fan_in(paper256):
    install(paper256, WidthController(0.5, randomly_select=False))
    try:
        for layer, gain in ((paper256.b16.conv0, 1 / math.sqrt(256 * 9)),  # 512 -> 512 3x3: 0.0208333
                            (paper256.b4.conv, 1 / math.sqrt(257 * 9)),    # 512 + mbstd
                            (paper256.b4.fc, 1 / math.sqrt(256 * 16))):    # 512 x 4 x 4 in whole channels
            w = layer.weight.detach()
            eff = layer.weight_hook(layer, w)
            assert torch.allclose(eff[0, 0] / w[0, 0], torch.tensor(gain), rtol=1e-6)
        assert 1 / math.sqrt(256 * 9) == pytest.approx(0.0208333, abs=1e-7)
    finally:
        uninstall(paper256)


def test_active_weight_counts_of_the_spec_table(paper256):
    assert active_weights(paper256, 1.0) == (23_995_584, 23_995_584)
    assert [active_weights(paper256, r)[0] for r in (0.75, 0.5, 0.25)] == [13_498_512, 6_000_224, 1_500_720]
    assert [active_weights(paper256, r, keepd=9)[0] for r in (0.75, 0.5, 0.25)] == [14_557_120, 7_805_632, 3_741_120]
    assert sum(p.numel() for p in paper256.parameters()) == 24_001_089  # unchanged by DynamicD
    D32 = _d()
    assert [active_weights(D32, r)[0] for r in (1.0, 0.75, 0.5, 0.25)] == [1_152_448, 648_528, 288_480, 72_304]
    assert [active_weights(D32, r, keepd=3)[0] for r in (0.75, 0.5, 0.25)] == [698_496, 373_568, 177_664]


def test_keepd_layers_at_256_and_32(paper256):
    flags = {name: f for name, (_, f) in dynamic_layers(paper256, keepd=9).items()}
    assert list(flags) == ["b64.skip", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0", "b16.conv1", "b16.skip",
                           "b8.conv0", "b8.conv1", "b8.skip", "b4.conv", "b4.fc", "b4.out"]
    assert flags["b64.skip"] == {"keepin": True} and flags["b32.conv0"] == {"keepin": False}
    assert flags["b4.conv"] == {"minus_dim": 1} and flags["b4.fc"] == {"div_dim": 16} and flags["b4.out"] == {
        "keepout": True}
    every = dynamic_layers(paper256)  # keepd -1: every layer; fromrgb keeps its RGB inputs
    assert len(every) == 4 + 5 * 3 + 3 and every["b256.fromrgb"][1] == {"keepin": True}
    quirk = {name: f for name, (_, f) in dynamic_layers(paper256, keepd=8).items()}
    assert quirk["b64.conv1"] == {"keepin": True} and quirk["b64.skip"] == {"keepin": False}  # official quirk
    at32 = {name: f for name, (_, f) in dynamic_layers(_d(), keepd=3).items()}
    assert list(at32)[:2] == ["b32.skip", "b16.conv0"] and at32["b32.skip"] == {"keepin": True}
    with pytest.raises(ValueError, match="'skip' is not supported"):
        dynamic_layers(Discriminator(0, 32, 3, architecture="skip", channel_base=256, channel_max=16))


def test_schedule_is_linear_in_images_shown():
    assert occupy_ratio(1.0, 0.5, 12_500, 25_000) == 0.75
    assert occupy_ratio(0.5, 1.0, 0, 25_000) == 0.5 and occupy_ratio(0.5, 1.0, 25_000, 25_000) == 1.0
    assert occupy_ratio(1.0, 0.5, 6_250, 25_000) == 0.875
