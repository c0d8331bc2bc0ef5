"""EqGAN-SA's heatmaps, SEL and alignment loss: the spec §9 parity facts, asserted deterministically.

Measured against the official genforce/eqgan-sa modules on CPU (README, "Parity"): with the same state dict the G
outputs agree to 2.1e-6 (225 keys, 761,689 parameters) and the Gmain gradients with L_align (heatmaps and noise from
the same seed) to 8.8e-6 absolute (largest gradient 0.60); these tests pin the same numbers without the official code.
"""

from __future__ import annotations

import pytest
import torch

from common.stylegan2.networks import Discriminator, Generator
from eqgan.align import alignment_loss, gradcam_weights
from eqgan.spatial import SEL, SpatialSynthesisNetwork, generate_heatmap_multi, heatmap_spec


def _g(res: int, base: int, cmax: int, zw: int, maps: int, use_sel: bool) -> Generator:
    return Generator(zw, 0, zw, res, 3, mapping_kwargs={"num_layers": maps},
                     synthesis_kwargs=dict(channel_base=base, channel_max=cmax, use_sel=use_sel),
                     synthesis_class=SpatialSynthesisNetwork)


def _fixed_heatmaps() -> dict[str, torch.Tensor]:
    return generate_heatmap_multi(2, 16, sigma=0.5, centers=torch.tensor([[0.0, 0.0], [0.5, -0.5]]),
                                  l2_delta=torch.zeros(2, 2, 2), l3_delta=torch.zeros(2, 2, 4), cur_sigma2=0.25,
                                  cur_sigma3=0.1)


def test_heatmaps_match_the_official_sampler():
    hm = _fixed_heatmaps()
    assert {k: tuple(v.shape) for k, v in hm.items()} == {"b8": (2, 1, 16, 16), "b16": (2, 2, 16, 16),
                                                          "b32": (2, 4, 16, 16)}
    assert [round(float(hm[k].sum()), 4) for k in ("b8", "b16", "b32")] == [154.9305, 177.3376, 161.1389]
    assert int(hm["b8"][1, 0].argmax()) == 11 * 16 + 4  # centre (y, x) = (0.5, -0.5): row 11, column 4
    torch.manual_seed(0)
    drawn = generate_heatmap_multi(2, 8)  # the official draws, in its order, from torch's global RNG
    assert [round(float(drawn[k].sum()), 4) for k in ("b8", "b16", "b32")] == [43.6004, 28.2922, 76.6953]
    assert float(drawn["b8"].min()) == pytest.approx(0.012484, abs=1e-6)
    assert float(drawn["b8"].max()) == pytest.approx(1.007225, abs=1e-6)
    spec = heatmap_spec(3, torch.Generator().manual_seed(1))  # the editing interface: the same draws, explicit
    again = generate_heatmap_multi(3, 8, **spec)
    assert all(torch.equal(again[k], generate_heatmap_multi(3, 8, **spec)[k]) for k in again)
    moved = generate_heatmap_multi(3, 8, **{**spec, "centers": spec["centers"] + 0.2})
    assert not torch.equal(moved["b32"], again["b32"])  # levels 2-3 follow the level-1 centre


def test_alignment_loss_formula_on_fixed_tensors():
    g = torch.Generator().manual_seed(0)
    feats = {k: torch.randn(2, 3, r, r, generator=g) for k, r in (("b8", 4), ("b16", 8), ("b32", 16))}
    weights = {k: torch.randn(2, 3, 1, 1, generator=g) for k in ("b8", "b16", "b32")}
    total, terms = alignment_loss(feats, weights, _fixed_heatmaps(), 16)
    assert [round(float(terms[k]), 5) for k in ("b8", "b16", "b32")] == [0.47455, 0.45391, 0.44863]
    assert float(total) == pytest.approx(1.377098, abs=1e-5)


def test_parameter_counts_with_and_without_sel():
    assert sum(p.numel() for p in _g(256, 16384, 512, 512, 8, False).parameters()) == 24_782_434
    with_sel = _g(256, 16384, 512, 512, 8, True)
    assert sum(p.numel() for p in with_sel.parameters()) == 56_222_346
    sels = [m for m in with_sel.modules() if isinstance(m, SEL)]
    assert len(sels) == 20 and sum(p.numel() for s in sels for p in s.parameters()) == 31_439_912
    assert sum(p.numel() for p in _g(32, 1024, 64, 64, 2, False).parameters()) == 278_963
    assert sum(p.numel() for p in _g(32, 1024, 64, 64, 2, True).parameters()) == 956_553
    assert sum(p.numel() for p in _g(64, 2048, 512, 512, 2, True).parameters()) == 16_690_580
    assert sum(p.numel() for p in Discriminator(0, 32, 3, channel_base=1024, channel_max=64).parameters()) == 288_993
    keys = set(_g(32, 256, 16, 16, 2, True).state_dict())
    assert {"synthesis.hm_conv0_b8.weight", "synthesis.hm_conv1_b32.bias", "synthesis.b4.conv1.sel.shared.0.weight",
            "synthesis.b32.torgb.sel.output.1.weight", "synthesis.b8.conv0.sel.mu.bias"} <= keys


def test_without_sel_the_output_is_plain_stylegan2():
    torch.manual_seed(0)
    G = _g(32, 256, 16, 16, 2, False)
    plain = Generator(16, 0, 16, 32, 3, mapping_kwargs={"num_layers": 2},
                      synthesis_kwargs=dict(channel_base=256, channel_max=16))
    missing = plain.load_state_dict(G.state_dict(), strict=False)
    assert missing.missing_keys == [] and all("hm_conv" in k for k in missing.unexpected_keys)
    z = torch.randn(4, 16)
    torch.manual_seed(1)
    a = G(z, None)
    torch.manual_seed(1)
    assert torch.equal(a, plain(z, None))  # no heatmap drawn, same noise stream


def test_sel_uses_the_heatmap_and_g_draws_its_own():
    torch.manual_seed(0)
    G = _g(32, 256, 16, 16, 2, True)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))  # SEL convs start at zero bias; make every path count
    ws = G.mapping(torch.randn(2, 16), None)
    spec = heatmap_spec(2, torch.Generator().manual_seed(3))
    hm = generate_heatmap_multi(2, 32, **spec)
    img, returned = G.synthesis(ws, heatmap=hm, return_heatmap=True, noise_mode="const")
    assert returned is hm and torch.equal(img, G.synthesis(ws, heatmap=hm, noise_mode="const"))
    moved = generate_heatmap_multi(2, 32, **{**spec, "centers": -spec["centers"]})
    assert (G.synthesis(ws, heatmap=moved, noise_mode="const") - img).abs().max() > 1e-3
    drawn, heatmap = G.synthesis(ws, return_heatmap=True, noise_mode="const")  # metrics/generation: no heatmap given
    assert heatmap["b32"].shape == (2, 4, 32, 32) and torch.isfinite(drawn).all()


def test_gradcam_weights_of_a_hand_built_d_are_its_fake_evidence():
    torch.manual_seed(0)
    D = Discriminator(0, 32, 3, channel_base=256, channel_max=16)
    img = torch.randn(4, 3, 32, 32)
    weights = gradcam_weights(D, img, torch.zeros(4, 0))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {"b8": (4, 16, 1, 1), "b16": (4, 16, 1, 1),
                                                               "b32": (4, 16, 1, 1)}
    x = img.clone()  # by hand: d sum softplus(-D) / d b8 features, spatially averaged
    logits, feats = D(x, None, return_features=["b8"])
    (grad,) = torch.autograd.grad(torch.nn.functional.softplus(-logits).sum(), feats["b8"])
    assert torch.allclose(weights["b8"], grad.mean(dim=(2, 3), keepdim=True))
    assert all(p.grad is None for p in D.parameters())  # the CAM pass accumulates nothing in D
