"""The FID Inception: state-dict parity with pytorch-fid's weight file, forward shapes, input pipelines, weights."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.metrics import FIDInceptionV3, InceptionExtractor, WeightsNotFoundError, prepare_inception_input
from common.metrics.extractors import load_inception_state
from common.metrics.inception import fold_batchnorm, nvidia_conv_names, nvidia_to_torchvision
from common.metrics.resize import tf1_resize
from common.metrics.weights import INCEPTION_WEIGHTS, WeightSource, resolve_weights

# pytorch-fid (src/pytorch_fid/inception.py, fid_inception_v3): torchvision Inception3(num_classes=1008,
# aux_logits=False) with FIDInceptionA/C/E_1/E_2 in place of Mixed_5b..7c. Every BasicConv2d is (out, in, kh, kw).


def _block_a(cin, pool):
    return {"branch1x1": (64, cin, 1, 1), "branch5x5_1": (48, cin, 1, 1), "branch5x5_2": (64, 48, 5, 5),
            "branch3x3dbl_1": (64, cin, 1, 1), "branch3x3dbl_2": (96, 64, 3, 3), "branch3x3dbl_3": (96, 96, 3, 3),
            "branch_pool": (pool, cin, 1, 1)}


def _block_c(c7):
    return {"branch1x1": (192, 768, 1, 1), "branch7x7_1": (c7, 768, 1, 1), "branch7x7_2": (c7, c7, 1, 7),
            "branch7x7_3": (192, c7, 7, 1), "branch7x7dbl_1": (c7, 768, 1, 1), "branch7x7dbl_2": (c7, c7, 7, 1),
            "branch7x7dbl_3": (c7, c7, 1, 7), "branch7x7dbl_4": (c7, c7, 7, 1), "branch7x7dbl_5": (192, c7, 1, 7),
            "branch_pool": (192, 768, 1, 1)}


def _block_e(cin):
    return {"branch1x1": (320, cin, 1, 1), "branch3x3_1": (384, cin, 1, 1), "branch3x3_2a": (384, 384, 1, 3),
            "branch3x3_2b": (384, 384, 3, 1), "branch3x3dbl_1": (448, cin, 1, 1), "branch3x3dbl_2": (384, 448, 3, 3),
            "branch3x3dbl_3a": (384, 384, 1, 3), "branch3x3dbl_3b": (384, 384, 3, 1), "branch_pool": (192, cin, 1, 1)}


PYTORCH_FID_CONVS = {
    "Conv2d_1a_3x3": (32, 3, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3), "Conv2d_2b_3x3": (64, 32, 3, 3),
    "Conv2d_3b_1x1": (80, 64, 1, 1), "Conv2d_4a_3x3": (192, 80, 3, 3),
    **{f"Mixed_5b.{k}": v for k, v in _block_a(192, 32).items()},
    **{f"Mixed_5c.{k}": v for k, v in _block_a(256, 64).items()},
    **{f"Mixed_5d.{k}": v for k, v in _block_a(288, 64).items()},
    "Mixed_6a.branch3x3": (384, 288, 3, 3), "Mixed_6a.branch3x3dbl_1": (64, 288, 1, 1),
    "Mixed_6a.branch3x3dbl_2": (96, 64, 3, 3), "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3),
    **{f"Mixed_6b.{k}": v for k, v in _block_c(128).items()},
    **{f"Mixed_6c.{k}": v for k, v in _block_c(160).items()},
    **{f"Mixed_6d.{k}": v for k, v in _block_c(160).items()},
    **{f"Mixed_6e.{k}": v for k, v in _block_c(192).items()},
    "Mixed_7a.branch3x3_1": (192, 768, 1, 1), "Mixed_7a.branch3x3_2": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_1": (192, 768, 1, 1), "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1), "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3),
    **{f"Mixed_7b.{k}": v for k, v in _block_e(1280).items()},
    **{f"Mixed_7c.{k}": v for k, v in _block_e(2048).items()},
}


def _expected_state_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for name, (out, cin, kh, kw) in PYTORCH_FID_CONVS.items():
        shapes[f"{name}.conv.weight"] = (out, cin, kh, kw)  # no conv bias
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{buffer}"] = (out,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()  # present in the published file (pytorch-fid issue #34)
    return shapes


def _randomised(net: FIDInceptionV3, seed: int = 0) -> FIDInceptionV3:
    """Non-trivial BN statistics and scales, so BN folding and weight mapping are really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if name.endswith(("running_var", "bn.weight")):
                value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bn.bias")):
                value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
    return net.eval()


def test_state_dict_matches_pytorch_fid_weight_file_layout():
    expected = _expected_state_shapes()
    actual = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    assert len(PYTORCH_FID_CONVS) == 94 and len(expected) == 566
    assert sorted(actual) == sorted(expected)
    assert actual == expected


@pytest.mark.parametrize("block, pool", [("Mixed_5b", "tf_avg"), ("Mixed_5d", "tf_avg"), ("Mixed_6b", "tf_avg"),
                                         ("Mixed_6e", "tf_avg"), ("Mixed_7b", "tf_avg"), ("Mixed_7c", "max")])
def test_fid_pool_patches(block, pool):
    """The pool branch sees TF's average pool (padding not counted) or, in Mixed_7c only, a max pool."""
    module = getattr(FIDInceptionV3(), block).eval()
    cin = module.branch_pool.conv.in_channels
    x = torch.zeros(1, cin, 5, 5)
    x[:, :, 0, 0] = 9.0  # a corner spike: TF avg -> 9/4 at the corner, max -> 9, zero-padded avg -> 1
    seen = []
    module.branch_pool.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        module(x)
    expected = {"tf_avg": 9.0 / 4.0, "max": 9.0}[pool]
    assert seen[0][0, 0, 0, 0].item() == pytest.approx(expected)
    assert seen[0][0, 0, 1, 1].item() == pytest.approx({"tf_avg": 1.0, "max": 9.0}[pool])


def test_random_weight_forward_gives_pool3_features_and_logits():
    net = FIDInceptionV3().eval()
    with torch.no_grad():
        features = net(torch.rand(2, 3, 299, 299) * 2 - 1)
        assert features.shape == (2, 2048)
        logits = net.logits(features, output_bias=False)
    assert logits.shape == (2, 1008)
    torch.testing.assert_close(logits, features @ net.fc.weight.T)


def test_batchnorm_folding_is_exact_to_round_off():
    net = _randomised(FIDInceptionV3())
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        reference, folded = net(x), fold_batchnorm(net)(x)
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-5)


def test_extractor_takes_uint8_of_any_size_and_grey():
    extractor = InceptionExtractor(FIDInceptionV3().eval(), resize="tf1")
    rgb = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert extractor.extract(rgb).shape == (2, 2048)
    grey = rgb[:, :1]
    torch.testing.assert_close(extractor.extract(grey), extractor.extract(grey.repeat(1, 3, 1, 1)))
    with pytest.raises(TypeError, match="uint8"):
        extractor.extract(rgb.float())
    assert extractor.probabilities(rgb).sum(dim=1).sub(1).abs().max() < 1e-5


def test_tf1_resize_is_identity_at_299_up_to_grid_rounding():
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0)).float()
    # float32 grid coordinates are exact to ~1e-7 (x 299 px) times gradients of at most 255 per pixel
    assert (tf1_resize(x) - x).abs().max() < 0.02


@pytest.mark.parametrize("mode, expected", [("tf1", (200 - 128) / 128), ("legacy_pytorch", 2 * 200 / 255 - 1),
                                            ("clean", (200 - 128) / 128)])
def test_constant_images_stay_constant_in_every_mode(mode, expected):
    x = prepare_inception_input(torch.full((1, 3, 37, 53), 200, dtype=torch.uint8), mode)
    assert x.shape == (1, 3, 299, 299)
    torch.testing.assert_close(x, torch.full_like(x, expected), rtol=0, atol=1e-5)


def test_legacy_pytorch_and_clean_are_identities_at_299():
    x = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8)
    torch.testing.assert_close(prepare_inception_input(x, "legacy_pytorch"), 2 * x.float() / 255 - 1)
    torch.testing.assert_close(prepare_inception_input(x, "clean"), (x.float() - 128) / 128)


def test_tf1_and_pytorch_resize_are_different_maps_on_noise():
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1)).float()
    tf1 = tf1_resize(x)
    half_pixel = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (tf1 - half_pixel).abs().mean() > 10  # metrics.md §10 measured 35.7 on a 0..255 scale


def test_nvidia_names_map_to_torchvision_names():
    pairs = {"layers.conv": "Conv2d_1a_3x3", "layers.conv_4": "Conv2d_4a_3x3",
             "layers.mixed.tower.conv_1": "Mixed_5b.branch5x5_2", "layers.mixed_2.tower_2.conv": "Mixed_5d.branch_pool",
             "layers.mixed_3.tower.conv_2": "Mixed_6a.branch3x3dbl_3",
             "layers.mixed_4.tower_1.conv_2": "Mixed_6b.branch7x7dbl_3",
             "layers.mixed_8.tower_1.conv_3": "Mixed_7a.branch7x7x3_4",
             "layers.mixed_9.tower_mixed_conv_1": "Mixed_7b.branch3x3_2b",
             "layers.mixed_10.tower_2_conv": "Mixed_7c.branch_pool"}
    names = nvidia_conv_names()
    assert {k: names[k] for k in pairs} == pairs
    assert sorted(names.values()) == sorted(PYTORCH_FID_CONVS)  # every conv exactly once

    net = _randomised(FIDInceptionV3(), seed=1)
    state = net.state_dict()
    for conv in PYTORCH_FID_CONVS:  # the TF graph's batch norm has no scale
        state[f"{conv}.bn.weight"].fill_(1.0)
    nvidia = {"output.weight": state["fc.weight"], "output.bias": state["fc.bias"]}
    for nv, tv in names.items():
        nvidia.update({f"{nv}.weight": state[f"{tv}.conv.weight"], f"{nv}.beta": state[f"{tv}.bn.bias"],
                       f"{nv}.mean": state[f"{tv}.bn.running_mean"], f"{nv}.var": state[f"{tv}.bn.running_var"]})
    loaded = FIDInceptionV3()
    loaded.load_state_dict(nvidia_to_torchvision(nvidia))
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), net(x))
    with pytest.raises(KeyError, match="does not have"):
        nvidia_to_torchvision({**nvidia, "layers.extra.weight": torch.zeros(1)})


def test_weight_files_load(tmp_path):
    net = _randomised(FIDInceptionV3(), seed=2)
    pth = tmp_path / "pt_inception.pth"
    torch.save(net.state_dict(), pth)
    state = load_inception_state(pth)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())

    class NotInception(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.output = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(x)

    script = tmp_path / "other.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(NotInception()).save(str(script))
    with pytest.raises(KeyError, match="layers.conv.weight"):
        load_inception_state(script)


def test_missing_weights_error_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("GENFORCE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GENFORCE_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights(INCEPTION_WEIGHTS)
    message = str(err.value)
    for hint in ("--weights", "GENFORCE_INCEPTION_WEIGHTS", "pt_inception-2015-12-05-6726825d.pth", "--download"):
        assert hint in message
    monkeypatch.setenv("GENFORCE_INCEPTION_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsNotFoundError, match="nope.pth does not exist"):
        resolve_weights(INCEPTION_WEIGHTS)


def test_download_is_verified_by_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    payload = tmp_path / "weights.bin"
    payload.write_bytes(b"not really inception")
    good = hashlib.sha256(payload.read_bytes()).hexdigest()
    url = payload.as_uri()  # file:// -- nothing leaves the machine
    bad = WeightSource("x", "GENFORCE_X_WEIGHTS", "x.bin", url=url, sha256="0" * 64)
    with pytest.raises(WeightsNotFoundError, match="expected 0000"):
        resolve_weights(bad, allow_download=True)
    assert not (tmp_path / "data" / "weights" / "x.bin").exists()
    ok = WeightSource("x", "GENFORCE_X_WEIGHTS", "x.bin", url=url, sha256=good)
    path = resolve_weights(ok, allow_download=True)
    assert path == tmp_path / "data" / "weights" / "x.bin" and path.read_bytes() == payload.read_bytes()
    assert resolve_weights(ok, allow_download=False) == path  # cached afterwards
    assert np.all([p.suffix != ".part" for p in path.parent.iterdir()])


def test_vgg16_imagenet_weights_are_checked_wherever_they_come_from(tmp_path, monkeypatch):
    from common.metrics.weights import VGG16_IMAGENET_WEIGHTS, load_vgg16_imagenet

    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GENFORCE_VGG16_IMAGENET_WEIGHTS", raising=False)
    monkeypatch.delenv("GENFORCE_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsNotFoundError) as info:
        load_vgg16_imagenet()
    for hint in ("--weights", "GENFORCE_VGG16_IMAGENET_WEIGHTS", "vgg16-397923af.pth", "download.pytorch.org"):
        assert hint in str(info.value)
    wrong = tmp_path / "vgg16.pth"
    wrong.write_bytes(b"some other network")
    with pytest.raises(WeightsNotFoundError, match="is not the file vgg16-397923af.pth"):
        resolve_weights(VGG16_IMAGENET_WEIGHTS, wrong)
    monkeypatch.setenv("GENFORCE_VGG16_IMAGENET_WEIGHTS", str(wrong))
    with pytest.raises(WeightsNotFoundError, match="not 397923af"):
        load_vgg16_imagenet()
    prefix = hashlib.sha256(wrong.read_bytes()).hexdigest()[:8]  # a source whose published prefix matches
    same = WeightSource("x", "GENFORCE_X_WEIGHTS", "x.pth", sha256=prefix, verify=True)
    assert resolve_weights(same, wrong) == wrong
