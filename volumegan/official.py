"""Official VolumeGAN weights in this project's modules (genforce/volumegan, a Hammer fork).

Hammer's generator names (``models/volumegan_generator.py``) -> :class:`volumegan.generator.VolumeGANGenerator`:

    mapping.dense{i}.{weight,bias}                  -> mapping.fc{i}.*
    w_avg                                           -> mapping.w_avg
    nerfmlp.fv.{const,layer{i}.*,mapping_network.*} -> synthesis.field.feature_volume.*
    nerfmlp.fg_mlps.{i}.{weight,bias}               -> synthesis.field.mlp.{i}.*       (style.* -> affine.*)
    nerfmlp.fg_density.* / nerfmlp.fg_color.*       -> synthesis.field.density.* / synthesis.field.feature.*
    synthesis.lod                                   -> synthesis.renderer.lod
    synthesis.layer{2k-1} / layer{2k} / output{k}   -> synthesis.renderer.b{r 2^k}.conv0 / conv1 / torgb
        (style.* -> affine.*, noise [1, 1, R, R] -> noise_const [R, R], noise_strength, weight, bias)
    synthesis.filter, layer*.filter                 -> resample_filter (the same [1, 3, 3, 1] filter)

The feature-volume box (``bounds``) is a config value officially, not a weight: it stays as built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from common.checkpoint import CheckpointError


def _generator_name(name: str, nerf_res: int) -> str:
    """One official generator name -> this project's."""
    rules = (
        (r"mapping\.dense(\d+)\.(.+)", lambda m: f"mapping.fc{m[1]}.{m[2]}"),
        (r"w_avg", lambda m: "mapping.w_avg"),
        (r"nerfmlp\.fv\.(.+)", lambda m: f"synthesis.field.feature_volume.{m[1]}"),
        (r"nerfmlp\.fg_mlps\.(\d+)\.style\.(.+)", lambda m: f"synthesis.field.mlp.{m[1]}.affine.{m[2]}"),
        (r"nerfmlp\.fg_mlps\.(\d+)\.(.+)", lambda m: f"synthesis.field.mlp.{m[1]}.{m[2]}"),
        (r"nerfmlp\.fg_density\.(.+)", lambda m: f"synthesis.field.density.{m[1]}"),
        (r"nerfmlp\.fg_color\.(.+)", lambda m: f"synthesis.field.feature.{m[1]}"),
        (r"synthesis\.lod", lambda m: "synthesis.renderer.lod"),
        (r"synthesis\.filter", lambda m: "synthesis.renderer.resample_filter"),
    )
    for pattern, target in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return target(match)
    match = re.fullmatch(r"synthesis\.(layer|output)(\d+)\.(.+)", name)
    if match:
        kind, index, rest = match[1], int(match[2]), match[3]
        block = index if kind == "output" else (index + 1) // 2
        layer = "torgb" if kind == "output" else ("conv0" if index % 2 else "conv1")
        rest = {"noise": "noise_const", "filter": "resample_filter"}.get(rest, rest)
        rest = re.sub(r"^style\.", "affine.", rest)
        return f"synthesis.renderer.b{nerf_res * 2**block}.{layer}.{rest}"
    return name


def official_generator_state(official: Mapping[str, Tensor], template: Mapping[str, Tensor],
                             source: str = "the checkpoint") -> dict[str, Tensor]:
    """The state dict of a :class:`~volumegan.generator.VolumeGANGenerator` whose ``state_dict()`` is
    ``template`` from an official generator state dict (``generator`` or ``generator_smooth``). Strict: a name
    either side lacks, or a shape that differs, is one :class:`CheckpointError` naming it."""
    res = [int(k.split(".b")[1].split(".")[0]) for k in template if k.startswith("synthesis.renderer.b")]
    nerf_res = min(res) // 2 if res else 0
    out: dict[str, Tensor] = {}
    for name, value in official.items():
        target = _generator_name(name, nerf_res)
        if target not in template:
            raise CheckpointError(f"{source}: the official generator's {name} has no place here ({target}); "
                                  "is the config the checkpoint's (resolution, nerf_res, widths)?")
        if target.endswith("noise_const"):
            value = value.reshape(template[target].shape)
        if value.shape != template[target].shape:
            raise CheckpointError(f"{source}: {name} is {tuple(value.shape)}, the config builds "
                                  f"{tuple(template[target].shape)}; is the config the checkpoint's?")
        out[target] = value
    missing = [k for k in template if k not in out and not k.endswith(("resample_filter", ".bounds"))]
    if missing:
        raise CheckpointError(f"{source} lacks {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1
                                                                 else "") + " of the generator")
    for name in template:
        out.setdefault(name, template[name])
    return out
