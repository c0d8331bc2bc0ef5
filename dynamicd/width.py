"""DynamicD's dynamic discriminator width (Yang et al., NeurIPS 2022, Sec. 3; spec dynamicd.md §2).

D is allocated at full StyleGAN2 width; each forward pass uses a sub-network that keeps a fraction r of every
dynamic layer's input and output channels, by masking weights (official genforce/dynamicd
``training/networks.py: unit_occupying``):

    n_in  = in              if keepin  else int(r * (in - minus_dim)) + minus_dim      (conv)
    n_in  = in / div_dim    if keepin  else int(r * (in / div_dim)),  in groups of div_dim   (fc)
    n_out = out             if keepout else int(r * out)
    W_eff = W * M / sqrt(n_in * k * k)       (conv)        W_eff = W * M / sqrt(n_in * div_dim)   (fc)

M keeps the chosen (out, in) pairs: the first channels (``randomly_select: false``, the increasing scheme) or an
independent random subset for the inputs and another for the outputs, re-drawn at every forward call of every layer
(the decreasing scheme). The equalised-lr gain is recomputed for the kept fan-in; the bias is not masked; masked
weights get exactly zero gradient. No parameter is added, so D's ``state_dict`` equals plain StyleGAN2's.

Which layers (spec §2.2, official ``DiscriminatorBlock`` / ``DiscriminatorEpilogue``): every block layer whose
Freeze-D index is >= ``keepd`` (``fromrgb`` keeps its RGB inputs; the layer whose index equals ``keepd`` keeps its
inputs), and always the epilogue's ``conv`` (the minibatch-std channel kept, ``minus_dim``), ``fc`` (whole channels
of the flattened 4x4 map, ``div_dim`` = 16) and ``out`` (all outputs kept). The masks act through the weight hook of
:mod:`common.stylegan2.networks`.

Deviation, by design: random subsets come from a dedicated ``torch.Generator`` that :class:`WidthController`
re-seeds at every iteration from (run seed, rank, iteration); the official code shuffles with numpy's global RNG,
seeded once per rank, so any other numpy consumer shifts its masks. Here a resumed run draws the same masks as an
uninterrupted one and measurements between iterations do not move the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from common.stylegan2.networks import Conv2dLayer, Discriminator, FullyConnectedLayer


def occupy_ratio(start: float, end: float, cur_kimg: float, total_kimg: float) -> float:
    """r = start + (end - start) * cur_kimg / total_kimg: linear in images shown (official ``training_loop.py``)."""
    return (end - start) / total_kimg * cur_kimg + start


class WidthController:
    """The width ratio shared by every dynamic layer of one D, and the generator of its random channel subsets."""

    def __init__(self, ratio: float, randomly_select: bool, seed: int = 0) -> None:
        self.ratio = ratio
        self.randomly_select = randomly_select
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, *key: int) -> None:
        """Restart the random subsets from ``key`` (run seed, rank, iteration): the masks of an iteration depend
        on nothing else."""
        self.generator.manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))

    def kept(self, n: int, k: int) -> Tensor | None:
        """A 0/1 vector over ``n`` channels keeping ``k`` of them (None: all kept): the first k, or a random k."""
        if k >= n:
            return None
        mask = torch.zeros(n)
        if self.randomly_select:
            mask[torch.randperm(n, generator=self.generator)[:k]] = 1
        else:
            mask[:k] = 1
        return mask


@dataclass
class DynamicLayer:
    """The weight hook of one dynamic layer (official per-layer flags ``keepin``, ``keepout``, ``minus_dim`` for the
    minibatch-std channel of the epilogue conv, ``div_dim`` for the epilogue fc's flattened 4x4 map)."""

    controller: WidthController
    keepin: bool = False
    keepout: bool = False
    minus_dim: int = 0
    div_dim: int = 1

    def widths(self, in_features: int, out_features: int) -> tuple[int, int]:
        """(n_in, n_out) at the current ratio; n_in counts groups of ``div_dim`` for an fc layer."""
        r = self.controller.ratio
        groups = in_features // self.div_dim
        if self.keepin:
            n_in = groups
        elif self.div_dim > 1:
            n_in = int(r * groups)
        else:
            n_in = int(r * (in_features - self.minus_dim)) + self.minus_dim
        n_out = out_features if self.keepout else int(r * out_features)
        return n_in, n_out

    def __call__(self, layer: nn.Module, w: Tensor) -> Tensor:
        """W * M / sqrt(kept fan-in), for a conv [out, in, k, k] or fc [out, in] weight."""
        out_features, in_features = w.shape[:2]
        n_in, n_out = self.widths(in_features, out_features)
        gain = 1 / math.sqrt(n_in * self.div_dim * w[0, 0].numel())  # w[0, 0]: the k x k kernel, or one weight
        # input subset first, then output subset (the official call order)
        in_mask = self.controller.kept(in_features // self.div_dim - self.minus_dim, n_in - self.minus_dim)
        out_mask = self.controller.kept(out_features, n_out)
        if in_mask is None and out_mask is None:
            return w * gain  # everything kept: the unmasked layer's arithmetic
        if in_mask is None:
            in_mask = torch.ones(in_features // self.div_dim - self.minus_dim)
        if self.minus_dim:
            in_mask = torch.cat([in_mask, torch.ones(self.minus_dim)])
        if self.div_dim > 1:
            in_mask = in_mask.repeat_interleave(self.div_dim)
        if out_mask is None:
            out_mask = torch.ones(out_features)
        scale = (out_mask[:, None] * in_mask[None, :] * gain).to(device=w.device, dtype=w.dtype)
        return w * (scale[:, :, None, None] if w.ndim == 4 else scale)


def dynamic_layers(D: Discriminator, keepd: int = -1) -> dict[str, tuple[nn.Module, dict[str, int | bool]]]:
    """D's dynamic layers by name with their flags (spec §2.2), in forward order.

    Block layers with Freeze-D index >= ``keepd`` (``-1``: all); ``fromrgb`` always keeps its inputs and so does the
    layer whose index equals ``keepd`` (the official quirk: a block's ``skip``, which reads the same input as its
    ``conv0``, keeps its inputs only when ``keepd`` names the skip itself). Then the epilogue's conv, fc and out.
    """
    if D.b4.architecture == "skip":
        raise ValueError("DynamicD follows the official resnet/orig D; D.architecture 'skip' is not supported")
    layers: dict[str, tuple[nn.Module, dict[str, int | bool]]] = {}
    for res in D.block_resolutions:
        block = getattr(D, f"b{res}")
        for name in ("fromrgb", "conv0", "conv1", "skip"):
            layer = getattr(block, name, None)
            if layer is None or layer.layer_idx < keepd:
                continue
            layers[f"b{res}.{name}"] = (layer, dict(keepin=name == "fromrgb" or layer.layer_idx == keepd))
    epilogue = D.b4
    minus_dim = epilogue.mbstd.num_channels if epilogue.mbstd is not None else 0
    layers["b4.conv"] = (epilogue.conv, dict(minus_dim=minus_dim))
    layers["b4.fc"] = (epilogue.fc, dict(div_dim=epilogue.resolution**2))
    layers["b4.out"] = (epilogue.out, dict(keepout=True))
    return layers


def install(D: Discriminator, controller: WidthController, keepd: int = -1) -> dict[str, DynamicLayer]:
    """Make D dynamic: a :class:`DynamicLayer` weight hook on each layer of :func:`dynamic_layers`."""
    hooks = {}
    for name, (layer, flags) in dynamic_layers(D, keepd).items():
        layer.weight_hook = hooks[name] = DynamicLayer(controller, **flags)
    return hooks


def uninstall(D: nn.Module) -> None:
    """Full width again: remove every weight hook of D."""
    for layer in D.modules():
        if isinstance(layer, (Conv2dLayer, FullyConnectedLayer)):
            layer.weight_hook = None


def active_weights(D: Discriminator, ratio: float, keepd: int = -1) -> tuple[int, int]:
    """(weight elements the sub-network at ``ratio`` uses, all weight elements of D) (spec §3 table)."""
    dynamic = dynamic_layers(D, keepd)
    hooked = {id(layer) for layer, _ in dynamic.values()}
    total = sum(m.weight.numel() for m in D.modules() if isinstance(m, (Conv2dLayer, FullyConnectedLayer)))
    active = sum(m.weight.numel() for m in D.modules()
                 if isinstance(m, (Conv2dLayer, FullyConnectedLayer)) and id(m) not in hooked)
    controller = WidthController(ratio, randomly_select=False)
    for layer, flags in dynamic.values():
        hook = DynamicLayer(controller, **flags)
        out_features, in_features = layer.weight.shape[:2]
        n_in, n_out = hook.widths(in_features, out_features)
        active += n_out * n_in * hook.div_dim * layer.weight[0, 0].numel()
    return active, total
