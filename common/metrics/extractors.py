"""Feature extractors behind one interface: ``extractor.extract(uint8 (N, C, H, W)) -> float32 (N, D)``.

- :class:`InceptionExtractor` (``tf_inception``): the FID Inception (``common.metrics.inception``) with one of the
  resize modes of ``common.metrics.resize`` (``tf1`` = stylegan2-ada-pytorch, the default). 2048-d pool3.
- :class:`TorchScriptExtractor` (``vgg16``): a user-given NVIDIA TorchScript detector called as the official
  metrics call it, ``detector(uint8 images, return_features=True)``; used for precision/recall.
- ``common.metrics.proxy.ProxyExtractor`` (``proxy``): offline, trained by the project, reported as "proxy-FD".

``protocol`` names everything that changes the numbers (network, weights' sha256, resize); statistics carry it
and ``common.metrics.stats`` refuses to compare statistics of different protocols.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from common.checkpoint import CheckpointError, read_weights
from common.metrics.base import FeatureExtractor, state_dict_sha256
from common.metrics.inception import FIDInceptionV3, fold_batchnorm, nvidia_to_torchvision
from common.metrics.proxy import ProxyExtractor, load_proxy
from common.metrics.resize import RESIZE_MODES, prepare_inception_input, to_rgb
from common.metrics.weights import INCEPTION_WEIGHTS, VGG16_WEIGHTS, file_sha256, resolve_weights

EXTRACTORS = ("tf_inception", "proxy", "vgg16")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") for name in zf.namelist())


def _jit_load(path: str | os.PathLike, device: str | torch.device) -> torch.jit.ScriptModule:
    """``torch.jit.load`` (deprecated in favour of torch.export, but NVIDIA's detectors only exist as TorchScript)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.jit.load(str(path), map_location=device)
        except RuntimeError as err:  # a cut-off or foreign zip: torch's reason is its first line
            reason = str(err).strip().splitlines()[0].split(". This is an internal")[0]
            raise CheckpointError(f"{path} is not a loadable TorchScript detector ({reason})") from None


def load_inception_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The torchvision-named state dict of pytorch-fid's ``.pth`` or NVIDIA's TorchScript ``.pt`` Inception.

    The ``.pth`` is read with ``torch.load(weights_only=True)``; the TorchScript with ``torch.jit.load`` (which
    runs no Python pickle code) and renamed by :func:`nvidia_to_torchvision`.
    """
    path = Path(path)
    if _is_torchscript(path):
        return nvidia_to_torchvision(_jit_load(path, "cpu").state_dict())
    state = read_weights(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not the Inception state dict")
    return nvidia_to_torchvision(state) if "layers.conv.beta" in state else dict(state)


class InceptionExtractor(FeatureExtractor):
    """2048-d pool3 features of the FID Inception ``net`` after the ``resize`` mode's input pipeline.

    Extraction runs a BN-folded, channels-last copy of ``net`` (same numbers to float round-off, faster on CPU).
    ``sha256`` identifies the weights (the file's hash when loaded from one, see :func:`inception_extractor`).
    """

    name = "tf_inception"
    feature_dim = 2048

    def __init__(self, net: FIDInceptionV3, resize: str = "tf1", device: str | torch.device = "cpu",
                 sha256: str | None = None) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}; choose one of {RESIZE_MODES}")
        self.resize = resize
        self.device = torch.device(device)
        self.sha256 = sha256 or state_dict_sha256(net)
        self.metric_label = {"tf1": "FID", "legacy_pytorch": "FID (legacy_pytorch)", "clean": "clean-FID"}[resize]
        self._net = fold_batchnorm(net).to(self.device).to(memory_format=torch.channels_last)

    @property
    def protocol(self) -> str:
        return f"{self.name}:{self.sha256[:16]}:{self.resize}"

    @torch.no_grad()
    def extract(self, images: Tensor) -> Tensor:
        x = prepare_inception_input(images.to(self.device), self.resize)
        return self._net(x.contiguous(memory_format=torch.channels_last)).float()

    @torch.no_grad()
    def probabilities(self, images: Tensor, output_bias: bool = False) -> Tensor:
        """Softmax over the 1008 classes; without the output bias by default, as the Inception Score uses them."""
        return torch.softmax(self._net.logits(self.extract(images), output_bias=output_bias), dim=1)


def inception_extractor(weights: str | os.PathLike | None = None, resize: str = "tf1",
                        device: str | torch.device = "cpu", allow_download: bool | None = None) -> InceptionExtractor:
    """The FID Inception with weights from ``weights``, ``$GENFORCE_INCEPTION_WEIGHTS``, the cache or a download."""
    path = resolve_weights(INCEPTION_WEIGHTS, weights, allow_download)
    net = FIDInceptionV3()
    try:
        net.load_state_dict(load_inception_state(path))
    except CheckpointError:
        raise
    except (KeyError, RuntimeError) as err:  # another network's weights (renaming or loading fails)
        reason = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{path} does not hold the FID Inception's weights ({type(err).__name__}: {reason}); "
                              "give pt_inception-2015-12-05-6726825d.pth or NVIDIA's inception-2015-12-05.pt"
                              ) from None
    return InceptionExtractor(net.eval(), resize=resize, device=device, sha256=file_sha256(path))


class TorchScriptExtractor(FeatureExtractor):
    """An NVIDIA TorchScript detector (``vgg16.pt`` for precision/recall) called on uint8 RGB images."""

    metric_label = "FD"

    def __init__(self, path: str | os.PathLike, name: str = "vgg16", device: str | torch.device = "cpu") -> None:
        self.name = name
        self.device = torch.device(device)
        self.sha256 = file_sha256(path)
        self._net = _jit_load(path, self.device).eval()
        self.feature_dim = 0  # known after the first batch
        try:  # a TorchScript file of another network fails here, not in the middle of a metric
            self.extract(torch.zeros([1, 3, 32, 32], dtype=torch.uint8))
        except RuntimeError as err:
            reason = str(err).strip().splitlines()[0][:200]
            raise CheckpointError(f"{path} does not behave like NVIDIA's {name}.pt detector (a forward with "
                                  f"return_features=True fails: {reason})") from None

    @torch.no_grad()
    def extract(self, images: Tensor) -> Tensor:
        features = self._net(to_rgb(images.to(self.device)), return_features=True).float()
        self.feature_dim = features.shape[1]
        return features


def build_extractor(name: str, weights: str | os.PathLike | None = None, resize: str = "tf1",
                    device: str | torch.device = "cpu", allow_download: bool | None = None) -> FeatureExtractor:
    """``tf_inception`` (FID), ``vgg16`` (precision/recall, user-given TorchScript) or ``proxy`` (offline)."""
    if name == "tf_inception":
        return inception_extractor(weights, resize, device, allow_download)
    if name == "vgg16":
        return TorchScriptExtractor(resolve_weights(VGG16_WEIGHTS, weights, False), "vgg16", device)
    if name == "proxy":
        return ProxyExtractor(load_proxy(weights), device=device)
    raise ValueError(f"unknown feature extractor {name!r}; choose one of {EXTRACTORS}")
