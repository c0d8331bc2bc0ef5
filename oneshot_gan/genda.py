"""GenDA's two lightweight modules and its diversity constraint (Yang et al., ICCV 2023; spec oneshot_gan.md §2).

No official code exists, so the forms are the spec's reading of the paper (each *unverified* part is named):

- :class:`AttributeAdaptor` sits between the frozen mapping and the frozen synthesis network: w' = a * w + b,
  initialised to the identity (a = 1, b = 0), so adaptation starts exactly at the source model. ``w``: one (a, b)
  of size w_dim shared by every layer (2 * 512 = 1,024 parameters at paper scale); ``wplus``: one per w
  (14 * 1,024 = 14,336 at 256 px). The affine form is unverified; tiny, latent-space and identity-initialised are not.
- :class:`AdaptedMapping` is what G calls as ``G.mapping``: the frozen mapping (its ``w_avg`` never updated), the
  training-time truncation w = w_avg + psi_train (w - w_avg) (the "diversity constraint"; unverified form; only in
  training mode, so G_ema, metrics and ``generate`` sample at psi = 1 unless asked), then the adaptor.
- :class:`AttributeClassifier` is the new adversarial head: a linear layer on the 512-d hidden fc output of the
  frozen D epilogue (513 parameters), replacing D's real/fake output. It is a plain ``nn.Linear`` (PyTorch's
  default init), not StyleGAN2's equalised-lr layer: with the equalised layer's N(0, 1) weights scaled by
  1/sqrt(C), Adam's steps move the effective weights sqrt(C) times slower (8x at the tiny width, 23x at 512), and
  in the tiny calibration (seeds 100-102) the head still scored the fakes above the reference after 200 steps while
  the adaptor drifted away from the target (README).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from common.stylegan2.networks import Discriminator, MappingNetwork


class AttributeAdaptor(nn.Module):
    """w' = a * w + b on ws (N, num_ws, w_dim); ``a``, ``b`` of shape (w_dim,) or, for ``wplus``, (num_ws, w_dim)."""

    def __init__(self, w_dim: int, num_ws: int, kind: Literal["w", "wplus"] = "w") -> None:
        super().__init__()
        shape = (w_dim,) if kind == "w" else (num_ws, w_dim)
        self.kind = kind
        self.scale = nn.Parameter(torch.ones(shape))  # a, identity init
        self.shift = nn.Parameter(torch.zeros(shape))  # b, identity init

    def forward(self, ws: Tensor) -> Tensor:
        return ws * self.scale + self.shift


class AdaptedMapping(nn.Module):
    """``G.mapping`` of a GenDA generator: frozen ``base`` mapping, training-time truncation, attribute adaptor.

    Same call as :class:`MappingNetwork` (``z, c, truncation_psi, truncation_cutoff, skip_w_avg_update``), so the
    loss, EMA copy, metrics and ``generate`` use it unchanged. ``w_avg`` (the source's) is never updated: the
    mapping is frozen, and truncation must pull towards the source's mean.
    """

    def __init__(self, base: MappingNetwork, adaptor: AttributeAdaptor, psi_train: float) -> None:
        super().__init__()
        self.base = base
        self.adaptor = adaptor
        self.psi_train = psi_train
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = base.z_dim, base.c_dim, base.w_dim, base.num_ws

    def forward(self, z: Tensor | None, c: Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, skip_w_avg_update: bool = False) -> Tensor:
        psi = truncation_psi * (self.psi_train if self.training else 1.0)
        ws = self.base(z, c, truncation_psi=psi, truncation_cutoff=truncation_cutoff, skip_w_avg_update=True)
        return self.adaptor(ws)


class AttributeClassifier(nn.Module):
    """D(img, c) = head(fc(backbone(img))): the frozen source D up to its epilogue's hidden fc, then a new linear
    head trained from scratch (``head``: C + 1 parameters). ``backbone`` keeps the source D's keys and its own
    (unused) ``b4.out``, so a snapshot holds the full source D next to the head."""

    def __init__(self, backbone: Discriminator) -> None:
        super().__init__()
        if backbone.c_dim:
            raise ValueError("GenDA's attribute classifier is defined for an unconditional source D")
        self.backbone = backbone
        self.head = nn.Linear(backbone.b4.fc.out_features, 1)
        self.c_dim, self.img_resolution, self.img_channels = 0, backbone.img_resolution, backbone.img_channels

    def feature_names(self) -> list[str]:
        return self.backbone.feature_names()

    def forward(self, img: Tensor, c: Tensor | None, return_features: tuple[str, ...] = (),
                **block_kwargs) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        _, features = self.backbone(img, c, return_features=("fc", *return_features), **block_kwargs)
        logits = self.head(features["fc"])
        if not return_features:
            return logits
        return logits, {name: features[name] for name in return_features}
