"""Offline proxy feature extractor for tiny presets: a small CNN the project trains deterministically.

None of the real detectors (TF Inception, VGG16) can be downloaded on offline machines (metrics.md §1, §9), so
tiny presets measure a Fréchet distance on the 64-d embedding of :class:`ProxyNet`, a 4-layer CNN trained to
classify the project's own synthetic data: ``common.data.synthetic.shapes`` (4 classes) and scikit-learn's
digits (10 classes) as one 14-way problem. Numbers are reported as **proxy-FD** and are not FIDs: they are
comparable only with other proxy-FDs of the same weights (the sha256 in the statistics' protocol).

Training is a pure function of :class:`ProxyTraining` (seeded data, seeded init and batch order, one CPU thread)
and runs once; the weights are cached under ``data/`` (``common.paths.data_dir``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.data.synthetic import digits, shapes
from common.metrics.base import FeatureExtractor, state_dict_sha256
from common.metrics.resize import to_rgb
from common.paths import data_dir

PROXY_RESOLUTION = 32
PROXY_FEATURES = 64
NUM_PROXY_CLASSES = 14  # 4 shape classes + 10 digits


@dataclass(frozen=True)
class ProxyTraining:
    """Everything the proxy's weights depend on; its hash names the cached file."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 5e-3
    num_shapes: int = 2000
    seed: int = 0
    version: int = 1  # bump when ProxyNet or the training recipe changes


class ProxyNet(nn.Module):
    """(N, 3, 32, 32) in [-1, 1] -> (N, 64) embedding; ``head`` classifies ReLU(embedding) into 14 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # 16x16
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
        )
        self.embed = nn.Linear(64, PROXY_FEATURES)
        self.head = nn.Linear(PROXY_FEATURES, NUM_PROXY_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.trunk(x).mean(dim=(2, 3)))

    def classify(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self(x)))


def proxy_input(images: Tensor) -> Tensor:
    """uint8 ``(N, 1|3, H, W)`` -> float ``(N, 3, 32, 32)`` in [-1, 1] (anti-aliased bilinear resize if needed)."""
    x = to_rgb(images).to(torch.float32) / 127.5 - 1.0
    if x.shape[-2:] != (PROXY_RESOLUTION, PROXY_RESOLUTION):
        x = F.interpolate(x, size=(PROXY_RESOLUTION, PROXY_RESOLUTION), mode="bilinear", align_corners=False,
                          antialias=True)
    return x


def _training_data(settings: ProxyTraining) -> tuple[Tensor, Tensor]:
    shape_images, shape_labels = shapes(settings.num_shapes, PROXY_RESOLUTION, seed=settings.seed + 1)
    digit_images, digit_labels = digits(PROXY_RESOLUTION, rgb=True)
    images = np.concatenate([shape_images, digit_images]).transpose(0, 3, 1, 2)
    labels = np.concatenate([shape_labels, digit_labels + 4])
    return proxy_input(torch.from_numpy(np.ascontiguousarray(images))), torch.from_numpy(labels)


def train_proxy(settings: ProxyTraining = ProxyTraining()) -> ProxyNet:
    """Train :class:`ProxyNet` with Adam on the synthetic 14-way task; bitwise reproducible on one machine."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fixed reduction order
    try:
        generator = torch.Generator().manual_seed(settings.seed)
        x, y = _training_data(settings)
        with torch.random.fork_rng():
            torch.manual_seed(settings.seed)
            net = ProxyNet()
        optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
        for _ in range(settings.steps):
            idx = torch.randint(len(x), (settings.batch_size,), generator=generator)
            loss = F.cross_entropy(net.classify(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(previous_threads)
    return net.eval().requires_grad_(False)


def proxy_weights_path(settings: ProxyTraining = ProxyTraining()) -> Path:
    """``<data_dir>/proxy-extractor-<hash of settings>.pt``."""
    key = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode()).hexdigest()[:12]
    return data_dir() / f"proxy-extractor-{key}.pt"


def load_proxy(path: str | os.PathLike | None = None, settings: ProxyTraining = ProxyTraining()) -> ProxyNet:
    """The proxy network from ``path``, else from the cache for ``settings``, else trained now and cached."""
    file = Path(path) if path is not None else proxy_weights_path(settings)
    net = ProxyNet()
    if file.is_file():
        net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        return net.eval().requires_grad_(False)
    if path is not None:
        raise FileNotFoundError(f"proxy extractor weights {path} do not exist (omit the path to train them)")
    net = train_proxy(settings)
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, file)  # atomic: concurrent trainers write identical weights
    return net


class ProxyExtractor(FeatureExtractor):
    """64-d :class:`ProxyNet` embeddings; a Fréchet distance on them is reported as proxy-FD, never as FID."""

    name = "proxy"
    feature_dim = PROXY_FEATURES
    metric_label = "proxy-FD"

    def __init__(self, net: ProxyNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.sha256 = state_dict_sha256(net)
        self._net = net.to(self.device).eval()

    @torch.no_grad()
    def extract(self, images: Tensor) -> Tensor:
        return self._net(proxy_input(images.to(self.device))).float()
