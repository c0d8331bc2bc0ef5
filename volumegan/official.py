"""Official VolumeGAN checkpoints and weights in this project's modules (genforce/volumegan, a Hammer fork).

A checkpoint is what Hammer's ``BaseRunner.save`` writes with ``torch.save``: ``{'models': {'generator',
'discriminator', 'generator_smooth'}: state dicts, 'model_kwargs_init': the constructor arguments (easydict
``EasyDict`` objects), 'optimizers', 'running_metadata', 'loss', ...}``. :func:`read_official_checkpoint` reads it
with a restricted unpickler (tensors, plain containers and ``EasyDict`` as a dict; any other global is refused
before it is resolved); :func:`official_networks` builds G, G_ema and D from the recorded arguments (the FFHQ
recipe's values where an argument is absent) and loads the weights strictly.

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

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from common.checkpoint import CheckpointError, check_torch_file
from common.stylegan2.method import Networks
from volumegan.discriminator import ProgressiveDiscriminator, map_official_state_dict
from volumegan.generator import VolumeGANGenerator
from volumegan.rendering import FFHQ_BOUNDS, RaySettings


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


class _EasyDict(dict):
    """What an ``easydict.EasyDict`` in a checkpoint becomes here: a plain dict of its items."""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("easydict", "EasyDict"): _EasyDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing the global {module}.{name}")


def read_official_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict an official runner saved (module docstring), read without running any code it could name."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}")
    check_torch_file(path)
    restricted = SimpleNamespace(__name__="volumegan_restricted", Unpickler=_RestrictedUnpickler, load=None)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} is not an official VolumeGAN checkpoint a safe load accepts ({err})") from None
    except Exception as err:  # noqa: BLE001 - damaged files raise many types
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({err})") from None
    if not isinstance(saved, Mapping) or not isinstance(saved.get("models"), Mapping):
        raise CheckpointError(f"{path} has no 'models' entry: not a checkpoint of the official VolumeGAN runner "
                              "(a project snapshot loads with common.stylegan2.snapshot.load_networks)")
    return dict(saved)


def _generator_kwargs(kw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """:class:`VolumeGANGenerator` arguments of the official generator's constructor arguments (Hammer's defaults
    and the FFHQ config's where absent)."""
    if kw.get("label_size", 0) or kw.get("bg_cfg") or kw.get("rgb_init_res_out", False):
        raise CheckpointError(f"{source}: a conditional generator, a background network or rgb_init_res_out is not "
                              "part of VolumeGAN's released recipe and is not built here")
    fv = {"feat_res": 32, "init_res": 4, "base_channels": 256, "output_channels": 32, **(kw.get("fv_cfg") or {})}
    embed = kw.get("embed_cfg") or {"N_freqs": 10}
    fg = {"num_layers": 4, "hidden_dim": 256, **(kw.get("fg_cfg") or {})}
    ps = kw.get("ps_cfg") or {}
    defaults = RaySettings()
    camera = ps.get("camera_dist", "gaussian")
    if camera not in ("gaussian", "normal", "uniform"):
        raise CheckpointError(f"{source}: camera_dist {camera!r} is not built here (gaussian, uniform)")
    rays = RaySettings(fov=ps.get("fov", defaults.fov), ray_start=ps.get("ray_start", defaults.ray_start),
                       ray_end=ps.get("ray_end", defaults.ray_end), num_steps=ps.get("num_steps", defaults.num_steps),
                       radius=ps.get("radius", defaults.radius),
                       yaw_mean=ps.get("horizontal_mean", defaults.yaw_mean),
                       yaw_std=ps.get("horizontal_stddev", defaults.yaw_std),
                       pitch_mean=ps.get("vertical_mean", defaults.pitch_mean),
                       pitch_std=ps.get("vertical_stddev", defaults.pitch_std),
                       distribution="uniform" if camera == "uniform" else "gaussian")
    field = dict(layers=fg["num_layers"], hidden=fg["hidden_dim"], out_dim=kw.get("out_dim", 512),
                 freqs=embed.get("N_freqs", 10),
                 volume={k: fv[k] for k in ("feat_res", "init_res", "base_channels", "output_channels")},
                 bounds=fv.get("bounds", FFHQ_BOUNDS))
    return dict(z_dim=kw.get("z_dim", 512), w_dim=kw.get("w_dim", 512), img_resolution=kw["resolution"],
                img_channels=kw.get("image_channels", 3), mapping_layers=kw.get("mapping_layers", 8),
                mapping_features=kw.get("mapping_fmaps", 512), nerf_res=kw.get("nerf_res", 32), field=field,
                rays=rays, channel_base=kw.get("fmaps_base", 32 << 10), channel_max=kw.get("fmaps_max", 512),
                conv_clamp=kw.get("conv_clamp"))


def official_networks(path: str | os.PathLike) -> Networks:
    """G (``generator``), G_ema (``generator_smooth``; G's weights when absent) and D of an official checkpoint,
    built from its recorded constructor arguments, weights loaded strictly, in eval mode."""
    saved = read_official_checkpoint(path)
    models, kwargs = saved["models"], saved.get("model_kwargs_init") or {}
    if "generator" not in models and "generator_smooth" not in models:
        raise CheckpointError(f"{path} holds no generator (models: {', '.join(models) or 'none'})")
    g_kwargs = dict(kwargs.get("generator") or kwargs.get("generator_smooth") or {})
    g_state = models.get("generator", models.get("generator_smooth"))
    if "resolution" not in g_kwargs:  # a bare release: the renderer's last block names the resolution
        outputs = [int(k.split("output")[1].split(".")[0]) for k in g_state if k.startswith("synthesis.output")]
        g_kwargs["resolution"] = g_kwargs.get("nerf_res", 32) * 2 ** max(outputs, default=0)
    built = _generator_kwargs(g_kwargs, str(path))
    nets = []
    for name in ("generator", "generator_smooth"):
        G = VolumeGANGenerator(**built)
        G.load_state_dict(official_generator_state(models.get(name, g_state), G.state_dict(), f"{path} ({name})"))
        nets.append(G.eval().requires_grad_(False))
    D = None
    if "discriminator" in models:
        d_kwargs = kwargs.get("discriminator") or {}
        if d_kwargs.get("architecture", "resnet") != "resnet" or d_kwargs.get("label_dim", 0):
            raise CheckpointError(f"{path}: only the official resnet, unconditional discriminator is built here")
        resolution = d_kwargs.get("resolution", g_kwargs["resolution"])
        D = ProgressiveDiscriminator(resolution, d_kwargs.get("image_channels", 3), 0,
                                     d_kwargs.get("fmaps_base", 32 << 10), d_kwargs.get("fmaps_max", 512),
                                     d_kwargs.get("mbstd_groups", 4), d_kwargs.get("mbstd_channels", 1),
                                     conv_clamp=d_kwargs.get("conv_clamp"))
        D.load_state_dict(map_official_state_dict(models["discriminator"], resolution))
        D.eval().requires_grad_(False)
    return Networks(G=nets[0], D=D, G_ema=nets[1], source=str(path))


def load_volumegan(path: str | os.PathLike, device: torch.device | str = "cpu") -> Networks:
    """The networks of a project run dir / snapshot (``load_networks``: the method that trained them rebuilds
    them) or of an official checkpoint (:func:`official_networks`), in eval mode on ``device``."""
    from common.stylegan2.snapshot import load_networks

    path = Path(path)
    if path.is_file() and _is_official(path):
        nets = official_networks(path)
        for module in nets.modules().values():
            module.to(device)
        return nets
    return load_networks(path, device)


def load_generator(path: str | os.PathLike, device: torch.device | str = "cpu") -> VolumeGANGenerator:
    """G_ema (else G) of :func:`load_volumegan`; another package's generator is a :class:`CheckpointError`."""
    nets = load_volumegan(path, device)
    G = nets.G_ema if nets.G_ema is not None else nets.G
    if not isinstance(G, VolumeGANGenerator):
        raise CheckpointError(f"{path} holds a {type(G).__name__}, not a VolumeGAN generator")
    return G


def _is_official(path: Path) -> bool:
    """An official runner's checkpoint: a torch file a weights-only load refuses (EasyDict arguments) or whose
    top level has ``models`` (project snapshots have ``modules``)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return True
    except Exception:  # noqa: BLE001 - not a torch file: load_networks names the problem
        return False
    return isinstance(saved, Mapping) and "models" in saved
