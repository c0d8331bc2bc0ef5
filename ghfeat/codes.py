"""How GH-Feat's three code groups feed the project's StyleGAN2 generator (spec ghfeat.md §3.2).

The official encoder predicts StyleGAN v1 AdaIN parameters: row l of ``[N, 14, 1024]`` holds (y_s, y_b) of layer l,
and G computes x * (y_s + 1) + y_b after instance norm with its own StyleMod dense layers removed. The StyleGAN2
equivalent of that per-layer code is the output of every modulated layer's ``affine`` (StyleGAN2's S-space:
``G.synthesis.style_dims()``, conv and toRGB styles, rendered with ``G.synthesis(None, styles=...)``). What changes:
one style vector per layer (modulation scale, no AdaIN bias; noise and biases stay G's), and exact per-layer widths
instead of codes tiled to 1024. Each head predicts its layers' styles minus 1: StyleGAN2's affine layers start at
bias 1, so a zero code is the neutral style, as y_s + 1 is in the official G.

Grouping by G's block resolution, as the official heads: coarse (from res6) = the 4 and 8 px blocks, middle (from
res5) = 16 and 32 px, fine (from res4) = the rest. For G below 64 px the top resolution moves to the fine group so
no group is empty (at 32 px: b4+b8 | b16 | b32, spec §8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

COARSE, MIDDLE = (4, 8), (16, 32)
STYLE_OFFSET = 1.0  # StyleGAN2 affine bias_init: a zero code is the neutral style


def _resolution(layer: str) -> int:
    return int(layer.split(".")[0].removeprefix("b"))


def style_groups(style_dims: Mapping[str, int]) -> tuple[list[str], list[str], list[str]]:
    """(coarse, middle, fine) layer names in G's forward order; see the module docstring."""
    top = max(_resolution(name) for name in style_dims)
    middle_res = tuple(r for r in MIDDLE if r < top or top > max(MIDDLE))
    groups: tuple[list[str], list[str], list[str]] = ([], [], [])
    for name in style_dims:
        res = _resolution(name)
        groups[0 if res in COARSE else 1 if res in middle_res else 2].append(name)
    if not all(groups):
        raise ValueError(f"GH-Feat's three code groups need G blocks at 4, 8, 16 and a higher resolution; got "
                         f"{sorted({_resolution(n) for n in style_dims})}")
    return groups


def group_dims(style_dims: Mapping[str, int]) -> tuple[int, int, int]:
    """The three heads' widths: the summed style widths of each group's layers."""
    return tuple(sum(style_dims[name] for name in group) for group in style_groups(style_dims))  # type: ignore[return-value]


def codes_to_styles(codes: Sequence[Tensor], style_dims: Mapping[str, int]) -> list[Tensor]:
    """(coarse, middle, fine) codes -> one style tensor per layer in ``style_dims`` order (code + 1)."""
    per_layer: dict[str, Tensor] = {}
    for code, group in zip(codes, style_groups(style_dims)):
        for name, part in zip(group, code.split([style_dims[n] for n in group], dim=1)):
            per_layer[name] = part + STYLE_OFFSET
    return [per_layer[name] for name in style_dims]


def styles_to_codes(styles: Sequence[Tensor], style_dims: Mapping[str, int]) -> tuple[Tensor, Tensor, Tensor]:
    """The inverse of :func:`codes_to_styles`: G's per-layer styles (``compute_styles``) as the three codes."""
    by_name = dict(zip(style_dims, styles))
    return tuple(torch.cat([by_name[n] - STYLE_OFFSET for n in group], dim=1)  # type: ignore[return-value]
                 for group in style_groups(style_dims))
