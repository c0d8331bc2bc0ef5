"""The feature-extractor interface shared by FID/KID/PR/IS and proxy-FD."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class FeatureExtractor(ABC):
    """``extract(images)``: uint8 ``(N, 1|3, H, W)`` -> float32 ``(N, feature_dim)`` on ``device``."""

    name: str
    feature_dim: int
    sha256: str
    metric_label: str  # how a Fréchet distance on these features is reported ("FID", "proxy-FD", ...)
    device: torch.device

    @property
    def protocol(self) -> str:
        """Everything that changes the features; two statistics are comparable only if these are equal."""
        return f"{self.name}:{self.sha256[:16]}"

    @abstractmethod
    def extract(self, images: Tensor) -> Tensor:
        """Features of a batch of uint8 images."""


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over the names and bytes of ``module``'s state dict (for weights that do not come from a file)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
