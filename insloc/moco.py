"""The MoCo v2 baseline every InsLoc table row compares against (He et al. 2020; Chen et al. 2020, "Improved
Baselines with Momentum Contrastive Learning"; facebookresearch/moco ``builder.py`` with ``--mlp``): image-level
instance discrimination with global pooling, no composition, no boxes.

- encoder: ResNet-50 (torchvision's, :class:`PooledResNet`) whose fc is the MoCo v2 MLP head, fc 2048 -> 2048,
  ReLU, fc 2048 -> 128 (27,966,656 parameters); the key encoder is its momentum copy (m = 0.999, updated before
  the key forward);
- loss: InfoNCE of q against its key and one queue of 65,536 negatives, T = 0.2
  (:func:`common.contrastive.instance_contrastive_loss`); keys shuffled across processes for BatchNorm;
- views: two RandomResizedCrop(224, scale (0.2, 1)) crops of the image with MoCo v2's colour augmentation, flip and
  ImageNet normalisation (:func:`moco_view`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms

from common import dist
from common.contrastive import dequeue_and_enqueue_, instance_contrastive_loss, momentum_update_
from common.data.dataset import ImageFiles
from insloc.data import ArrayImages, ImageList, PixelAugmentation, item_seeded_torch, normalise
from insloc.model import ResNet


class PooledResNet(ResNet):
    """:class:`insloc.model.ResNet` + global average pooling + ``fc``: at the defaults torchvision's ``resnet50``
    (same names, shapes and forward); smaller settings are the tiny preset's trunk with the same head."""

    def __init__(self, num_classes: int, block: str = "bottleneck", layers: tuple[int, ...] = (3, 4, 6, 3),
                 width: int = 64, stem_pool: bool = True) -> None:
        super().__init__(block, layers, width, stem_pool)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Linear(self.out_channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.fc(torch.flatten(self.avgpool(super().forward(x)["c5"]), 1))


def moco_encoder(dim: int = 128, block: str = "bottleneck", layers: tuple[int, ...] = (3, 4, 6, 3),
                 width: int = 64, stem_pool: bool = True) -> nn.Module:
    """ResNet (default ResNet-50) with the MoCo v2 MLP head in place of fc."""
    net = PooledResNet(dim, block, layers, width, stem_pool)
    hidden = net.fc.weight.shape[1]
    net.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), net.fc)
    return net


class MoCoV2(nn.Module):
    """Query encoder, momentum key encoder and the queue."""

    def __init__(self, encoder: nn.Module, dim: int = 128, queue_size: int = 65536, temperature: float = 0.2,
                 momentum: float = 0.999) -> None:
        super().__init__()
        self.temperature, self.momentum = temperature, momentum
        self.encoder_q = encoder
        self.encoder_k = copy.deepcopy(encoder)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def forward(self, query: Tensor, key: Tensor) -> tuple[Tensor, dict[str, float]]:
        q = F.normalize(self.encoder_q(query), dim=1)
        with torch.no_grad():
            momentum_update_(self.encoder_k, self.encoder_q, self.momentum)
            shuffled, unshuffle = dist.batch_shuffle(key)
            k = dist.batch_unshuffle(F.normalize(self.encoder_k(shuffled), dim=1), unshuffle)
        loss = instance_contrastive_loss(q, k, self.queue.clone(), self.temperature)
        top1 = ((q * k).sum(1, keepdim=True) > (q @ self.queue).max(1, keepdim=True).values).float().mean()
        dequeue_and_enqueue_(self.queue, self.queue_ptr, k)
        return loss, {"loss": float(loss.detach()), "acc": float(top1)}


class MoCoViews:
    """Two MoCo v2 views of an RGB uint8 image: RandomResizedCrop(``size``, scale (0.2, 1)), the colour
    augmentation of :class:`insloc.data.PixelAugmentation`, a horizontal flip with p 0.5, normalisation."""

    def __init__(self, size: int = 224, colour_strength: float = 1.0) -> None:
        self.crop = transforms.RandomResizedCrop(size, scale=(0.2, 1.0))
        self.pixels = PixelAugmentation(colour_strength)

    def view(self, image: np.ndarray, rng: np.random.Generator) -> Tensor:
        picture = np.asarray(self.crop(Image.fromarray(image)))
        picture = self.pixels(picture, rng)
        if rng.random() < 0.5:
            picture = picture[:, ::-1]
        return normalise(picture)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        return self.view(image, rng), self.view(image, rng)


class MoCoPairs(torch.utils.data.Dataset):
    """Two MoCo v2 views per image of the same sources as :class:`insloc.data.CompositionPairs` (item = epoch x len
    + index, every draw from the item's generator)."""

    def __init__(self, images: ImageList | ImageFiles | ArrayImages, size: int = 224, seed: int = 0,
                 colour_strength: float = 1.0) -> None:
        self.images, self.views, self.seed = images, MoCoViews(size, colour_strength), seed

    def __len__(self) -> int:
        return len(self.images.names)

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor]:
        epoch, index = divmod(item, len(self))
        rng = np.random.default_rng([self.seed, epoch, index])
        image = np.asarray(self.images.open_image(index).convert("RGB"))
        with item_seeded_torch(rng):
            return self.views(image, rng)
