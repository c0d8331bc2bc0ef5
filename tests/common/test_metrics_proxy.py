"""The offline proxy extractor: deterministic training, caching, and a proxy-FD that separates datasets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from common.data.synthetic import digits, shapes
from common.metrics import ProxyExtractor, build_extractor, fid_from_features, load_proxy
from common.metrics.proxy import ProxyTraining, proxy_weights_path, train_proxy

TINY = ProxyTraining(steps=4, num_shapes=64)


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def test_training_is_deterministic_and_seed_dependent():
    a, b = train_proxy(TINY), train_proxy(TINY)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    images = _nchw(shapes(6, 32, seed=11)[0])
    fa, fb = ProxyExtractor(a), ProxyExtractor(b)
    assert fa.sha256 == fb.sha256
    assert torch.equal(fa.extract(images), fb.extract(images)) and fa.extract(images).shape == (6, 64)
    other = train_proxy(dataclasses.replace(TINY, seed=1))
    assert ProxyExtractor(other).sha256 != fa.sha256


def test_weights_are_cached_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    path = proxy_weights_path(TINY)
    assert path.parent == tmp_path and not path.exists()
    first = load_proxy(settings=TINY)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    second = load_proxy(settings=TINY)
    assert path.stat().st_mtime_ns == stamp
    assert ProxyExtractor(first).sha256 == ProxyExtractor(second).sha256 == ProxyExtractor(load_proxy(path)).sha256
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_proxy(tmp_path / "missing.pt")


def test_proxy_fd_of_halves_is_far_below_proxy_fd_across_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))  # trains the default proxy once, here
    extractor = build_extractor("proxy")
    assert extractor.metric_label == "proxy-FD" and extractor.feature_dim == 64
    shape_images = _nchw(shapes(1600, 32, seed=123)[0])
    digit_images = _nchw(digits(32, rgb=True)[0])[:800]
    shape_features = extractor.extract(shape_images).numpy()
    half_a, half_b = shape_features[:800], shape_features[800:]
    within = fid_from_features(half_a, half_b)
    across = fid_from_features(half_a, extractor.extract(digit_images).numpy())
    assert 0 < within < 0.1 * across
