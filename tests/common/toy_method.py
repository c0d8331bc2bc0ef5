"""A toy paper method that uses every loop hook at once, the way the wave-2 packages will:

- ``build_networks`` wraps G's mapping in a trainable affine adaptor (GenDA's attribute adaptor) and gives every
  synthesis layer a trainable input hook (EqGAN-SA's way in), before the loop copies G_ema;
- ``init_networks`` puts a pretrained G inside the wrapper;
- ``trainable_parameters`` freezes the pretrained G (only the adaptor and the hooks train) and D's first block;
- a weight hook masks the input channels of D's epilogue fc, recomputing its fan-in gain (DynamicD's masks);
- ``scalars`` logs a method-level value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from common.checkpoint import load_module_state
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape

KEPT = 0.5  # fraction of D.b4.fc input channels the mask keeps


class AdaptedMapping(nn.Module):
    """w' = scale * mapping(z, c) + shift, identity at init; G.mapping's interface (loss and G.forward call it)."""

    def __init__(self, mapping: nn.Module) -> None:
        super().__init__()
        self.base = mapping
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = mapping.z_dim, mapping.c_dim, mapping.w_dim, mapping.num_ws
        self.scale = nn.Parameter(torch.ones(mapping.w_dim))
        self.shift = nn.Parameter(torch.zeros(mapping.w_dim))

    def forward(self, z: Tensor, c: Tensor, **kwargs) -> Tensor:
        return self.base(z, c, **kwargs) * self.scale + self.shift


class InjectedBias(nn.Module):
    """An input hook: x + strength * (layer_input or 1); strength starts at 0, so the output starts unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: Tensor, layer_input: Tensor | None) -> Tensor:
        return x + self.strength * (layer_input if layer_input is not None else 1.0)


class ChannelMask:
    """Weight hook keeping the first ``KEPT`` input channels of an fc whose input is C maps of ``div`` pixels:
    W_eff = W * M / sqrt(n_in * div) (DynamicD's ``unit_occupying``, first-k)."""

    def __init__(self, div: int) -> None:
        self.div = div

    def __call__(self, layer: nn.Module, weight: Tensor) -> Tensor:
        channels = layer.in_features // self.div
        kept = int(KEPT * channels)
        mask = torch.zeros(channels, self.div, dtype=weight.dtype)
        mask[:kept] = 1
        return weight * mask.flatten() / math.sqrt(kept * self.div)


class ToyMethod(Method):
    name = "toy"

    def build_networks(self, cfg, shape: NetworkShape) -> Networks:
        nets = super().build_networks(cfg, shape)
        nets.G.mapping = AdaptedMapping(nets.G.mapping)
        for res in nets.G.synthesis.block_resolutions:
            for layer in getattr(nets.G.synthesis, f"b{res}").modulated_layers():
                layer.set_input_hook(InjectedBias(), name="inject")
        fc = nets.D.b4.fc
        fc.weight_hook = ChannelMask(div=nets.D.b4.resolution**2)
        return nets

    def init_networks(self, nets: Networks, source: Networks) -> None:
        """The pretrained G goes inside the wrapper (its mapping into the adaptor's base), D as it is."""
        for target, pretrained in ((nets.G, source.G), (nets.G_ema, source.G_ema)):
            load_module_state(target.mapping.base, pretrained.mapping.state_dict(), "G.mapping", source.source)
            load_module_state(target.synthesis, pretrained.synthesis.state_dict(), "G.synthesis", source.source,
                              new_modules=("inject",))
        load_module_state(nets.D, source.D.state_dict(), "D", source.source)

    def trainable_parameters(self, state: LoopState, network: str) -> list[nn.Parameter]:
        if network == "G":
            return [p for name, p in state.G.named_parameters() if "scale" in name or "shift" in name
                    or "inject" in name]
        first_block = f"b{state.D.img_resolution}."
        return [p for name, p in state.D.named_parameters() if not name.startswith(first_block)]

    def scalars(self, state: LoopState) -> dict[str, float]:
        return {"Progress/toy": float(state.batch_idx)}
