"""Feature pipelines, the real-statistics cache, generators and the CLI (proxy extractor; offline, CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from common.data import ImageDataset, write_image_archive
from common.data.synthetic import shapes
from common.metrics import (
    FIDInceptionV3,
    InceptionExtractor,
    ProxyExtractor,
    compute_fid,
    compute_is,
    compute_kid,
    compute_pr,
    dataset_features,
    fid_from_features,
    generator_features,
    inception_score,
    kernel_inception_distance,
    open_images,
    precision_recall,
    real_stats,
)
from common.metrics.__main__ import main as metrics_cli
from common.metrics.proxy import ProxyTraining, proxy_weights_path, train_proxy

REPO = Path(__file__).resolve().parents[2]


class ToyGenerator(nn.Module):
    """StyleGAN2-ADA's interface: z_dim, c_dim, G(z, c) -> (N, 3, 16, 16) in [-1, 1]."""

    def __init__(self, c_dim: int = 0) -> None:
        super().__init__()
        self.z_dim, self.c_dim = 8, c_dim
        self.fc = nn.Linear(8 + c_dim, 3 * 16 * 16)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(torch.cat([z, c], dim=1))).view(-1, 3, 16, 16)


def toy_loader(path: str, device: torch.device) -> nn.Module:
    """A ``--generator`` hook for the CLI test: the checkpoint holds ToyGenerator's state dict."""
    G = ToyGenerator()
    G.load_state_dict(torch.load(path, weights_only=True))
    return G.to(device)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data dir with a (quickly trained) proxy at the default path, 37 real and 23 fake shape images."""
    root = tmp_path_factory.mktemp("metrics")
    previous = os.environ.get("GENFORCE_DATA_DIR")
    os.environ["GENFORCE_DATA_DIR"] = str(root / "data")
    net = train_proxy(ProxyTraining(steps=4, num_shapes=64))
    proxy_weights_path().parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), proxy_weights_path())
    real_images = shapes(37, 32, seed=1)[0]
    write_image_archive(root / "real.zip", real_images)
    fake_images = shapes(23, 32, seed=2)[0]
    np.savez(root / "fake.npz", fake_images)
    torch.save(ToyGenerator().state_dict(), root / "toy.pt")
    yield {"root": root, "net": net, "real": real_images, "fake": fake_images}
    if previous is None:
        os.environ.pop("GENFORCE_DATA_DIR", None)
    else:
        os.environ["GENFORCE_DATA_DIR"] = previous


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def test_dataset_features_equal_direct_extraction(data):
    extractor = ProxyExtractor(data["net"])
    stats = dataset_features(ImageDataset(data["root"] / "real.zip"), extractor, capture_all=True, batch_size=8)
    direct = extractor.extract(_nchw(data["real"])).numpy()
    assert stats.num_items == 37 and stats.protocol == extractor.protocol
    np.testing.assert_allclose(stats.features(), direct, rtol=1e-5, atol=1e-5)
    npz = open_images(data["root"] / "fake.npz")
    assert dataset_features(npz, extractor, max_items=20, batch_size=8).num_items == 20


def test_real_stats_are_cached_by_identity_and_count(data, monkeypatch):
    extractor = ProxyExtractor(data["net"])
    dataset = ImageDataset(data["root"] / "real.zip")
    cache_dir = data["root"] / "cache"
    first = real_stats(dataset, extractor, cache_dir=cache_dir, batch_size=16)
    assert len(list(cache_dir.iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr("common.metrics.compute.dataset_features", fail)
    again = real_stats(dataset, extractor, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.raw_cov, first.raw_cov)
    with pytest.raises(AssertionError, match="cache should have answered"):  # other count -> other key
        real_stats(dataset, extractor, max_items=30, cache_dir=cache_dir)
    with pytest.raises(AssertionError, match="cache should have answered"):  # features needed, not cached
        real_stats(dataset, extractor, capture_all=True, cache_dir=cache_dir)
    with pytest.raises(AssertionError, match="cache should have answered"):  # other weights -> other key
        real_stats(dataset, ProxyExtractor(train_proxy(ProxyTraining(steps=1, num_shapes=8))), cache_dir=cache_dir)


def test_generator_features_are_seeded_and_counted(data):
    extractor = ProxyExtractor(data["net"])
    G = ToyGenerator().eval()
    a = generator_features(G, extractor, 10, capture_all=True, batch_size=8, batch_gen=4, seed=3)
    b = generator_features(G, extractor, 10, capture_all=True, batch_size=8, batch_gen=4, seed=3)
    c = generator_features(G, extractor, 10, capture_all=True, batch_size=8, batch_gen=4, seed=4)
    assert a.num_items == 10 and a.features().shape == (10, 64)
    np.testing.assert_array_equal(a.features(), b.features())
    assert not np.array_equal(a.features(), c.features())
    with pytest.raises(ValueError, match="conditional"):
        generator_features(ToyGenerator(c_dim=3), extractor, 4, batch_size=4)
    labelled = shapes(8, 32, seed=4)
    write_image_archive(data["root"] / "labelled.zip", labelled[0], labelled[1].tolist())
    conditional = generator_features(ToyGenerator(c_dim=4), extractor, 4, batch_size=4,
                                     label_dataset=ImageDataset(data["root"] / "labelled.zip", use_labels=True))
    assert conditional.num_items == 4


def test_compute_fid_on_images_equals_feature_level_fd(data):
    extractor = ProxyExtractor(data["net"])
    real, fake = ImageDataset(data["root"] / "real.zip"), open_images(data["root"] / "fake.npz")
    value = compute_fid(real, fake, extractor, num_gen=50000, cache=False, batch_size=16)
    expected = fid_from_features(extractor.extract(_nchw(data["real"])).numpy(),
                                 extractor.extract(_nchw(data["fake"])).numpy())
    assert value == pytest.approx(expected, rel=1e-5)


def test_kid_pr_is_pipelines_equal_feature_level_values(data):
    extractor = ProxyExtractor(data["net"])
    real, fake = ImageDataset(data["root"] / "real.zip"), open_images(data["root"] / "fake.npz")
    real_f = dataset_features(real, extractor, capture_all=True, batch_size=16).features()
    fake_f = dataset_features(fake, extractor, capture_all=True, batch_size=16).features()
    kid = compute_kid(real, fake, extractor, cache=False, num_subsets=5, batch_size=16)
    assert kid == pytest.approx(kernel_inception_distance(real_f, fake_f, num_subsets=5), rel=1e-5, abs=1e-6)
    pr = compute_pr(real, fake, extractor, cache=False, batch_size=16)
    assert pr == precision_recall(torch.from_numpy(real_f), torch.from_numpy(fake_f), k=3)

    inception = InceptionExtractor(FIDInceptionV3().eval())  # random weights: the pipeline, not the number
    mean, std = compute_is(fake, inception, num_gen=6, num_splits=2, batch_size=4)
    probs = inception.probabilities(_nchw(data["fake"][:6])).numpy()
    assert (mean, std) == pytest.approx(inception_score(probs, num_splits=2), rel=1e-4)


def _cli(data, *args: str):
    return CliRunner().invoke(metrics_cli, list(args), catch_exceptions=False)


def test_cli_fid_from_images_and_from_a_network_hook(data):
    root = data["root"]
    out = root / "fid.jsonl"
    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--fake", str(root / "fake.npz"),
                  "--extractor", "proxy", "--workers", "0", "--batch", "8", "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "proxy-FD" in result.output and "23 fake vs 37 real" in result.output
    record = json.loads(out.read_text().splitlines()[-1])
    extractor = ProxyExtractor(data["net"])
    expected = fid_from_features(extractor.extract(_nchw(data["real"])).numpy(),
                                 extractor.extract(_nchw(data["fake"])).numpy())
    assert record["results"]["proxy-FD"] == pytest.approx(expected, rel=1e-5)
    assert record["settings"] == {"covariance": "/n (stylegan2-ada)"}  # what changes the number is recorded
    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--fake", str(root / "fake.npz"), "--unbiased",
                  "--extractor", "proxy", "--workers", "0", "--batch", "8", "--out", str(out), "--device", "cpu")
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["settings"] == {"covariance": "/(n-1) (pytorch-fid, clean-fid)"}
    assert record["results"]["proxy-FD"] != pytest.approx(expected, rel=1e-9)

    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--network", str(root / "toy.pt"),
                  "--generator", f"{__name__}:toy_loader", "--num", "12", "--extractor", "proxy", "--workers", "0",
                  "--batch", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "12 fake vs 37 real" in result.output


def test_cli_errors_are_clear(data, monkeypatch):
    root = data["root"]
    monkeypatch.delenv("GENFORCE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GENFORCE_ALLOW_DOWNLOAD", raising=False)
    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--fake", str(root / "fake.npz"), "--device", "cpu")
    assert result.exit_code == 2 and "--weights" in result.output and "GENFORCE_INCEPTION_WEIGHTS" in result.output
    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--network", str(root / "toy.pt"),
                  "--generator", "no_such_module:load", "--extractor", "proxy", "--device", "cpu")
    assert result.exit_code == 2 and "--generator your.module:function" in result.output
    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--extractor", "proxy", "--device", "cpu")
    assert result.exit_code == 2 and "exactly one of --fake" in result.output
    (root / "corrupt_inception.pth").write_bytes(bytes(range(256)) * 20)  # not a state dict: one line, no advice
    result = _cli(data, "fid", "--real", str(root / "real.zip"), "--fake", str(root / "fake.npz"), "--weights",
                  str(root / "corrupt_inception.pth"), "--device", "cpu")
    assert result.exit_code != 0 and "corrupt_inception.pth" in result.output and "Traceback" not in result.output
    assert "weights_only` set to `False`" not in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_gather_the_same_statistics_as_one(data):
    """torchrun, 2 gloo ranks: 37 reals / 23 fakes split r, r+2, ... (with wrap-around) give the same proxy-FD."""
    root = data["root"]
    args = ["fid", "--real", str(root / "real.zip"), "--fake", str(root / "fake.npz"), "--extractor", "proxy",
            "--workers", "0", "--batch", "4", "--no-cache", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", GENFORCE_DATA_DIR=str(root / "data"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
              f"--master_port={_free_port()}", "-m", "common.metrics", *args, "--out", str(root / "ddp.jsonl")]
    subprocess.run(launch, env=env, check=True, capture_output=True, cwd=REPO, timeout=240)
    single = _cli(data, *args, "--out", str(root / "single.jsonl"))
    assert single.exit_code == 0, single.output
    ddp = json.loads((root / "ddp.jsonl").read_text())
    one = json.loads((root / "single.jsonl").read_text())
    assert ddp["num_gpus"] == 2 and one["num_gpus"] == 1
    assert ddp["results"]["proxy-FD"] == pytest.approx(one["results"]["proxy-FD"], rel=1e-6)
