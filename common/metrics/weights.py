"""Where feature-extractor weights come from: a path, an environment variable, the cache, or an opt-in download.

Never silently random (ARCHITECTURE.md). Order of resolution for a :class:`WeightSource`:

1. an explicit path (``--weights FILE`` / a config value);
2. the environment variable (``GENFORCE_INCEPTION_WEIGHTS``, ``GENFORCE_VGG16_WEIGHTS``,
   ``GENFORCE_VGG16_IMAGENET_WEIGHTS``);
3. ``<data_dir>/weights/<file name>`` (a previous download);
4. the official URL, only when downloading is allowed (``allow_download=True``, ``--download`` or
   ``GENFORCE_ALLOW_DOWNLOAD=1``) and a sha256 is known; the file is verified before it is moved into place.

Otherwise :class:`WeightsNotFoundError` says how to provide the file. pytorch-fid's Inception file has a known
sha256 (its name carries the torch.hub prefix ``6726825d``); NVIDIA's TorchScript detectors publish none
(metrics.md §2), so they are user-given files only. torchvision's ImageNet VGG16 (GH-Feat's perceptual loss,
:func:`load_vgg16_imagenet`) is checked against the sha256 prefix torch.hub checks (``397923af``), wherever the
file comes from.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.paths import data_dir

if TYPE_CHECKING:
    from torch import nn


class WeightsNotFoundError(FileNotFoundError):
    """A feature extractor's weight file is missing; the message says how to provide it."""


@dataclass(frozen=True)
class WeightSource:
    """Where one weight file comes from. ``sha256`` may be a prefix (torch.hub publishes the first 8 hex digits in
    the file name); with ``verify`` every file is checked against it, a user's file too."""

    name: str
    env: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    note: str = ""
    verify: bool = False


INCEPTION_WEIGHTS = WeightSource(
    name="tf_inception",
    env="GENFORCE_INCEPTION_WEIGHTS",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    note="NVIDIA's TorchScript https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
         "inception-2015-12-05.pt is accepted as well (same network and numbers)",
)
VGG16_WEIGHTS = WeightSource(
    name="vgg16",
    env="GENFORCE_VGG16_WEIGHTS",
    filename="vgg16.pt",
    note="download https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt yourself "
         "(NVIDIA publishes no checksum)",
)

VGG16_IMAGENET_WEIGHTS = WeightSource(
    name="vgg16_imagenet",
    env="GENFORCE_VGG16_IMAGENET_WEIGHTS",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256="397923af",  # torchvision's VGG16_Weights.IMAGENET1K_V1; torch.hub checks this sha256 prefix
    note="torchvision's ImageNet VGG16 (torchvision.models.VGG16_Weights.IMAGENET1K_V1), e.g. from "
         "~/.cache/torch/hub/checkpoints/vgg16-397923af.pth",
    verify=True,
)

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised by path, size and mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def _download(source: WeightSource, dest: Path) -> Path:
    """Fetch ``source.url`` to ``dest`` through a temporary file, refusing a sha256 mismatch."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".part", delete=False) as tmp:
        with urllib.request.urlopen(source.url) as response:  # noqa: S310 - fixed https URL
            shutil.copyfileobj(response, tmp)
    actual = file_sha256(tmp.name)
    if not actual.startswith(source.sha256):
        os.unlink(tmp.name)
        raise WeightsNotFoundError(f"download of {source.url} has sha256 {actual}, expected {source.sha256}")
    os.replace(tmp.name, dest)
    return dest


def _verified(source: WeightSource, path: Path) -> Path:
    """``path`` itself, after the sha256 check of a source that asks for one on every file."""
    if source.verify and source.sha256 and not file_sha256(path).startswith(source.sha256):
        raise WeightsNotFoundError(
            f"{source.name} weights: {path} has sha256 {file_sha256(path)[:16]}..., not {source.sha256}...: it is not "
            f"the file {source.filename} ({source.url})"
        )
    return path


def resolve_weights(source: WeightSource, path: str | os.PathLike | None = None,
                    allow_download: bool | None = None) -> Path:
    """The weight file for ``source`` (see the module docstring for the order); raises WeightsNotFoundError."""
    if path is not None:
        if not Path(path).is_file():
            raise WeightsNotFoundError(f"{source.name} weights: {path} does not exist")
        return _verified(source, Path(path))
    if os.environ.get(source.env):
        env_path = Path(os.environ[source.env])
        if not env_path.is_file():
            raise WeightsNotFoundError(f"{source.name} weights: ${source.env}={env_path} does not exist")
        return _verified(source, env_path)
    cached = data_dir() / "weights" / source.filename
    if cached.is_file():
        return _verified(source, cached)
    if allow_download is None:
        allow_download = os.environ.get("GENFORCE_ALLOW_DOWNLOAD") == "1"
    if allow_download and source.url and source.sha256:
        return _download(source, cached)
    how = ["pass --weights FILE", f"set {source.env}=FILE", f"put the file at {cached}"]
    if source.url and source.sha256:
        how.append(f"or allow the download of {source.url} (sha256-checked) with --download or "
                   f"GENFORCE_ALLOW_DOWNLOAD=1")
    raise WeightsNotFoundError(
        f"no weights for the {source.name} feature extractor: " + "; ".join(how) + "."
        + (f" ({source.note})" if source.note else "")
    )


def load_vgg16_imagenet(path: str | os.PathLike | None = None, allow_download: bool | None = None) -> nn.Module:
    """torchvision's VGG16 with its ImageNet weights (:data:`VGG16_IMAGENET_WEIGHTS`), eval mode, no grad.

    Expects ImageNet-normalised RGB input; ``model.features[:23]`` ends at relu4_3 (GH-Feat's perceptual layer,
    Keras ``block4_conv3``). A missing or wrong file raises :class:`WeightsNotFoundError` with how to provide it.
    """
    import torchvision

    from common.checkpoint import read_weights

    file = resolve_weights(VGG16_IMAGENET_WEIGHTS, path, allow_download)
    model = torchvision.models.vgg16(weights=None)
    model.load_state_dict(read_weights(file))
    return model.eval().requires_grad_(False)
