"""VolumeGAN's progressive discriminator: parameter counts (spec volumegan.md §3), lod semantics of the official
forward, and parity with the official ``VolumeGANDiscriminator`` through a fixture it wrote
(``fixtures/make_official_d.py``)."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.checkpoint import CheckpointError
from common.stylegan2.networks import Discriminator
from volumegan.discriminator import ProgressiveDiscriminator, map_official_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "official_d_small.pt"
SMALL = dict(channel_base=256, channel_max=16)  # channels 8 @32, 16 @16, 8, 4


def _small_d(seed: int = 0, resolution: int = 32) -> ProgressiveDiscriminator:
    torch.manual_seed(seed)
    D = ProgressiveDiscriminator(resolution, **SMALL)
    with torch.no_grad():  # the biases start at zero; make them matter
        for name, param in D.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0.0, 0.3)
    return D


def _images(n: int = 8, resolution: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "resolution, expected", [(256, 28_875_393), (128, 28_399_361), (64, 26_497_025), (32, 21_513_217)]
)
def test_parameter_counts_match_the_official_d(resolution, expected):
    # spec §3/§9 (official FFHQ settings: fmaps_base 32768, max 512). Built on the CPU (~0.1 s each): the shared
    # setup_filter cannot run under torch.device("meta").
    D = ProgressiveDiscriminator(resolution)
    assert sum(p.numel() for p in D.parameters()) == expected
    assert [f"b{r}" for r in (*D.block_resolutions, 4)] == list(D.fromrgb)  # a fromRGB at every resolution


def test_official_fixture_outputs_match():
    fixture = torch.load(FIXTURE, weights_only=True)
    config = fixture["config"]
    D = ProgressiveDiscriminator(
        config["resolution"],
        channel_base=config["fmaps_base"],
        channel_max=config["fmaps_max"],
        mbstd_group_size=config["mbstd_groups"],
    )
    D.load_state_dict(map_official_state_dict(fixture["official_state_dict"], config["resolution"]), strict=True)
    images = fixture["images"].float()
    with torch.no_grad():
        for lod, expected in zip(fixture["lods"].tolist(), fixture["scores"]):
            logits = D(images, None, lod=None if math.isnan(lod) else lod)
            assert logits.shape == expected.shape == (len(images), 1)
            torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5, msg=f"lod {lod}")
    assert float(D.lod) == 1.25  # the buffer came through the mapping


def test_lod_zero_is_the_stylegan2_resnet_d():
    # at lod 0 only the full-resolution fromRGB runs, then every block: exactly the shared StyleGAN2 'resnet' D
    D = _small_d()
    reference = Discriminator(c_dim=0, img_resolution=32, img_channels=3, **SMALL)
    state = {k: v for k, v in D.state_dict().items() if not k.startswith("fromrgb.") and k != "lod"}
    state.update({f"b32.fromrgb.{k}": v for k, v in D.fromrgb.b32.state_dict().items()})
    reference.load_state_dict(state, strict=True)
    img = _images()
    with torch.no_grad():
        torch.testing.assert_close(D(img, None, lod=0.0), reference(img, None), rtol=0, atol=0)


def _path_from(D: ProgressiveDiscriminator, x: torch.Tensor, start: int) -> torch.Tensor:
    """Run the blocks from index ``start`` (resolution img_resolution >> start) down, then the 4x4 head."""
    for res in D.block_resolutions[start:]:
        x, _ = getattr(D, f"b{res}")(x, None)
    return D.b4(x, None, None)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_integer_lod_reads_the_pooled_image_at_its_resolution_only(k):
    D, img = _small_d(), _images()
    res = 32 >> k
    pooled = F.avg_pool2d(img, 2**k) if k else img  # k times 2x2 average pooling = one 2^k pooling
    with torch.no_grad():
        logits = D(img, None, lod=float(k))
        torch.testing.assert_close(logits, _path_from(D, D.fromrgb[f"b{res}"](pooled), k), rtol=0, atol=1e-6)
        # blocks above res/2^k and the other fromRGBs do not matter: redraw them
        for name, param in D.named_parameters():
            above = any(name.startswith(f"b{r}.") for r in D.block_resolutions[:k])
            other_rgb = name.startswith("fromrgb.") and not name.startswith(f"fromrgb.b{res}.")
            if above or other_rgb:
                param.normal_()
        torch.testing.assert_close(D(img, None, lod=float(k)), logits, rtol=0, atol=0)
        getattr(D, f"b{res}").conv0.weight.normal_()  # ... but the first block run does
        assert not torch.allclose(D(img, None, lod=float(k)), logits)


@pytest.mark.parametrize("lod", [0.4, 1.5, 0.999])
def test_fractional_lod_blends_the_next_fromrgb_into_the_block_output(lod):
    D, img = _small_d(), _images()
    k, alpha = math.floor(lod), lod - math.floor(lod)
    res = 32 >> k
    image_k = F.avg_pool2d(img, 2**k) if k else img
    with torch.no_grad():
        x_high, _ = getattr(D, f"b{res}")(D.fromrgb[f"b{res}"](image_k), None)  # the lod-k path, one block on
        x_low = D.fromrgb[f"b{res // 2}"](F.avg_pool2d(image_k, 2))  # the lod-(k+1) input
        expected = _path_from(D, alpha * x_low + (1 - alpha) * x_high, k + 1)
        torch.testing.assert_close(D(img, None, lod=lod), expected, rtol=0, atol=1e-6)


def test_fade_in_is_continuous_at_both_ends():
    D, img = _small_d(), _images()
    with torch.no_grad():
        torch.testing.assert_close(D(img, None, lod=1e-6), D(img, None, lod=0.0), rtol=0, atol=1e-5)
        torch.testing.assert_close(D(img, None, lod=1 - 1e-6), D(img, None, lod=1.0), rtol=0, atol=1e-5)


def test_last_lod_interval_does_not_fade_and_the_4x4_fromrgb_is_unused():
    # official forward: the lod loop stops at 8x8, so lods in (max_lod - 1, max_lod) equal max_lod - 1, and
    # fromrgb.b4 (official input{log2(res) - 2}) never runs
    D, img = _small_d(), _images()
    assert D.max_lod == 3
    with torch.no_grad():
        torch.testing.assert_close(D(img, None, lod=2.5), D(img, None, lod=2.0), rtol=0, atol=0)
    for lod in (0.0, 0.5, 2.5):
        D.zero_grad(set_to_none=True)
        D(img, None, lod=lod).sum().backward()
        assert D.fromrgb.b4.weight.grad is None


def test_lod_buffer_is_the_default_and_out_of_range_lods_are_refused():
    D, img = _small_d(), _images(4)
    with torch.no_grad():
        D.lod.fill_(1.5)
        torch.testing.assert_close(D(img), D(img, None, lod=1.5), rtol=0, atol=0)
        assert D(img, torch.zeros(4, 0)).shape == (4, 1)  # the shared loss's D(img, c) with c_dim 0
        for bad in (-0.5, 3.0):
            with pytest.raises(ValueError, match=r"lod must lie in \[0, 3\)"):
                D(img, None, lod=bad)
        with pytest.raises(ValueError, match="expected images"):
            D(_images(4, 16))
    with pytest.raises(ValueError, match="unconditional"):
        ProgressiveDiscriminator(32, c_dim=10)


def _official_like(resolution: int) -> dict:
    """A copy of the fixture's official state dict (resolution 32)."""
    assert resolution == 32
    return dict(torch.load(FIXTURE, weights_only=True)["official_state_dict"])


@pytest.mark.parametrize("resolution", [8, 32, 256])
def test_mapping_yields_exactly_this_modules_keys(resolution):
    D = ProgressiveDiscriminator(resolution, channel_base=1024, channel_max=4)
    official = {}
    for idx, res in enumerate((*D.block_resolutions, 4)):
        official |= {f"input{idx}.weight": 0, f"input{idx}.bias": 0, f"layer{2 * idx}.weight": 0}
        official |= {f"layer{2 * idx}.bias": 0, f"layer{2 * idx + 1}.weight": 0, f"layer{2 * idx + 1}.bias": 0}
        if res > 4:
            official |= {f"residual{idx}.weight": 0, f"residual{idx}.filter": torch.ones(4, 4)}
            official[f"layer{2 * idx + 1}.filter"] = torch.ones(4, 4)
    official |= {"output.weight": 0, "output.bias": 0, "lod": 0}
    assert set(map_official_state_dict(official, resolution)) == set(D.state_dict())


def test_mapping_names_the_first_missing_or_unexpected_key():
    official = _official_like(32)
    del official["residual1.weight"], official["input0.bias"]
    with pytest.raises(CheckpointError, match=r"missing key 'input0.bias'"):
        map_official_state_dict(official, 32)
    official = _official_like(32)
    official["embedding.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key 'embedding.weight'"):
        map_official_state_dict(official, 32)
    with pytest.raises(CheckpointError, match=r"input0..input3 are those of resolution 32, not 64"):
        map_official_state_dict(_official_like(32), 64)
    official = _official_like(32)
    official["residual2.filter"] = official["residual2.filter"] * 2
    with pytest.raises(CheckpointError, match=r"filter 'residual2.filter' differs"):
        map_official_state_dict(official, 32)
