"""Import the official GH-Feat TensorFlow pickles without TensorFlow and without running pickled code.

The official code (genforce/ghfeat, TensorFlow 1 on NVlabs StyleGAN v1's dnnlib) pickles tuples of
``dnnlib.tflib.network.Network`` objects with ``training/misc.py:save_pkl`` (``pickle.HIGHEST_PROTOCOL`` = 4 on
its Python 3.6):

- ``(E, G, D, Gs)``: ``training/training_loop_ghfeat.py`` snapshots (``network-snapshot-*.pkl``,
  ``network-final.pkl``) and the released ``ghfeat-encoder-{ffhq,tower,bedroom}-256.pkl``; ``extract_ghfeat.py``
  unpickles ``E, _, _, Gs``;
- ``(G, D, Gs)``: the StyleGAN v1 generator pickle given to ``train_ghfeat.py`` (``stylegan-*-256.pkl``).

A Network pickles as ``dnnlib/tflib/network.py:Network.__getstate__``: ``{version: 3, name, static_kwargs,
components, build_module_src, build_func_name, variables: [(name, array), ...]}``. The official
``__setstate__`` ``exec()``s ``build_module_src`` and rebuilds the TF graph. Here a restricted unpickler turns each
Network into an inert :class:`TFNetwork` record. The source text is kept as a string and never run. NumPy arrays are
rebuilt, and every other global is refused with :class:`UnsafePickleError`. Versions 2-4 are read (4 is StyleGAN2's
dnnlib, with the same fields), as are pickle protocols 2-5. Protocols 0 and 1 are refused.

Variable names. ``Network._init_graph`` names the own variables relative to the network's scope
(``var.name[len(self.scope) + 1:]``, so ``E_gpu0/Conv0/weight`` is ``Conv0/weight``). ``training/networks_ghfeat.py``
creates them as ``<variable scopes>/<leaf>``:

- conv and dense layers: ``get_weight`` -> ``weight`` (conv ``[k, k, in, out]`` HWIO, dense ``[in, out]``),
  ``apply_bias`` -> ``bias`` ``[out]``;
- ``sync_batch_norm(scope='batch_norm')`` -> ``batch_norm/{moving_mean, moving_variance, gamma, beta}``;
- scopes: ``resnet_backbone``: ``Conv0`` (stem, no bias), ``stage{s}_unit{u}/{Shortcut, Conva, Convb, Convc}``
  (``Shortcut`` has variables only in a stage's first unit, with no bias; ``Convc`` only in bottlenecks);
  ``Encoder``: ``stage5/...`` (the extra bottleneck); ``fpn``: ``fpn/lconv_{3,4,5}`` (laterals on res4, res5,
  res6: ``start_level=3`` of (res1..res6)) and ``fpn/fconv_{0,1,2}``; ``sam``: ``fuse_conv_{0,1,2}`` (outside the
  fpn scope); heads: ``LowLevel`` (res4, fine), ``MidLevel`` (res5), ``HighLevel`` (res6, coarse), each ``weight``,
  ``bias`` and ``batch_norm/*``. ``Latent_out`` has no variables.

Mapping onto :class:`~ghfeat.encoder.GHFeatEncoder` (:func:`official_name` gives it for every state-dict key):

====================================  ==========================================
official (relative to E's scope)      ``GHFeatEncoder.state_dict()``
====================================  ==========================================
``Conv0/weight``                      ``stem_conv.weight``
``Conv0/batch_norm/*``                ``stem_bn.*``
``stage{s}_unit{u}/Conv{x}/...``      ``stages.{s-1}.{u-1}.conv{x}`` / ``.bn{x}``
``stage{s}_unit{u}/Shortcut/...``     ``stages.{s-1}.{u-1}.shortcut.0`` / ``.1``
``stage5/...``                        ``stage5.`` + the same unit rule
``fpn/lconv_{k}/...``                 ``laterals.{k-3}``
``fpn/fconv_{i}/...``                 ``fpn_out.{i}``
``fuse_conv_{i}/...``                 ``fuse.{i}``
``LowLevel``, ``MidLevel``,           ``heads.{0,1,2}`` / ``head_bns.{0,1,2}``
``HighLevel``
====================================  ==========================================

Leaves: ``weight`` and ``bias`` keep their names. In ``batch_norm``, ``gamma``, ``beta``, ``moving_mean`` and
``moving_variance`` become ``weight``, ``bias``, ``running_mean`` and ``running_var``. ``num_batches_tracked`` has
no official counterpart and is left at 0. Layouts: a conv weight goes from HWIO to OIHW (``transpose(3, 2, 0, 1)``),
and a dense weight from ``[in, out]`` to ``Linear``'s ``[out, in]``. The official graph is NCHW throughout
(``conv2d(..., data_format='NCHW')``), and ``dense`` flattens with ``tf.reshape(x, [-1, C*H*W])``. That is (C, H, W)
order, the same as the port's ``flatten(1)``, so no permutation is needed.

The generator records (G, D, Gs: StyleGAN v1 ``G_style`` with ``mapping``/``synthesis`` components, ``D_basic``)
are returned as records: their arrays and static kwargs are exposed for users' own ports. This project has no StyleGAN
v1 synthesis network and decodes GH-Feat codes with its StyleGAN2 (spec ghfeat.md §3.2).
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from common.checkpoint import CheckpointError
from common.stylegan2.legacy import UnsafePickleError, numpy_dtype
from ghfeat.encoder import DEPTHS, STYLEGAN_V1_256, GHFeatEncoder, official_layout

__all__ = [
    "TFNetwork",
    "UnsafePickleError",
    "encoder_kwargs",
    "encoder_state_dict",
    "extract_ghfeat",
    "load_official_encoder",
    "official_name",
    "read_official_pickle",
]

TUPLES = "(E, G, D, Gs) (train_ghfeat.py snapshots, ghfeat-encoder-*.pkl) or (G, D, Gs) (a StyleGAN v1 generator pkl)"
_STATE_KEYS = {"version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables"}
_HEADS = ("LowLevel", "MidLevel", "HighLevel")  # heads.0/1/2: res4 (fine), res5, res6 (coarse)
_BN_LEAVES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


@dataclass
class TFNetwork:
    """An official ``dnnlib.tflib.network.Network`` as inert data (its ``__getstate__``, dnnlib/tflib/network.py).

    ``variables``: the network's own variables, by name relative to its scope, in creation order.
    ``build_module_src`` is the pickled source text of the build module, never executed.
    """

    name: str
    build_func_name: str
    static_kwargs: dict[str, Any]
    variables: OrderedDict[str, np.ndarray]
    components: dict[str, TFNetwork] = field(default_factory=dict)
    build_module_src: str = ""
    version: int = 3

    @property
    def vars(self) -> OrderedDict[str, np.ndarray]:
        """Own variables, then each component's as ``<component name>/<name>`` (``Network.vars``)."""
        out = OrderedDict(self.variables)
        for comp in self.components.values():
            out.update((f"{comp.name}/{name}", value) for name, value in comp.vars.items())
        return out


class _PickledNetwork:
    """What ``dnnlib.tflib.network.Network`` resolves to while unpickling: the state is validated into a
    :class:`TFNetwork` (``.record``). Nothing is built and no code runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafePickleError("a pickled Network is rebuilt from its state only, never by calling the class")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"version", "name", "variables"} <= set(state):
            raise CheckpointError("a pickled Network has no dnnlib state (version, name, variables, ...)")
        name = state["name"]
        if state["version"] not in (2, 3, 4):
            raise CheckpointError(f"Network '{name}': state version {state['version']!r} (dnnlib writes 2-4)")
        unknown = sorted(set(state) - _STATE_KEYS)
        if unknown:
            raise CheckpointError(f"Network '{name}': unknown state keys {', '.join(map(str, unknown))}")
        components = dict(state.get("components") or {})
        if not all(isinstance(c, _PickledNetwork) and hasattr(c, "record") for c in components.values()):
            raise CheckpointError(f"Network '{name}': its components are not all Networks")
        variables: OrderedDict[str, np.ndarray] = OrderedDict()
        for item in state["variables"]:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise CheckpointError(f"Network '{name}': variables are not (name, array) pairs")
            var, value = item
            if not isinstance(var, str) or not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in (
                "biuf"
            ):
                raise CheckpointError(f"Network '{name}': variable {var!r} is not a numeric array")
            variables[var] = np.asarray(value)
        self.record = TFNetwork(
            name=str(name),
            build_func_name=str(state.get("build_func_name")),
            static_kwargs=dict(state.get("static_kwargs") or {}),
            variables=variables,
            components={key: comp.record for key, comp in components.items()},
            build_module_src=str(state.get("build_module_src") or ""),
            version=int(state["version"]),
        )


class _NDArrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only :func:`_reconstruct` accepts it; it cannot be called."""


def _dtype(name: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = numpy_dtype(name, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError("refusing a NumPy object dtype: official variables are numeric arrays")
    return dtype


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``: an empty array that the pickle's BUILD fills (``ndarray.__setstate__``
    with a dtype from :func:`_dtype`, so never an object array)."""
    if cls is not _NDArrayClass:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r} (only numpy.ndarray)")
    return np.ndarray.__new__(np.ndarray, (0,), np.int8)


def _scalar(dtype: Any, data: bytes) -> np.generic:
    """``numpy.core.multiarray.scalar``, keeping the NumPy type (a 0-d variable such as StyleGAN's ``lod``)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("refusing a NumPy scalar of object dtype")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (arrays under pickle protocol 5)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("refusing a NumPy buffer of object dtype")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _latin1(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode``: how Python 3 writes bytes under protocol 2, restricted to that use."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): _PickledNetwork,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}
for _core in ("numpy.core", "numpy._core"):  # NumPy 1 / NumPy 2 module names
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


class _TFPickleUnpickler(pickle.Unpickler):
    """Resolves only the globals of a dnnlib TF pickle (:data:`_ALLOWED`); anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.split(".")[0] in ("torch", "torch_utils"):
            raise UnsafePickleError(f"refusing global {module}.{name}: a PyTorch pickle, not an official TensorFlow "
                                    "one (StyleGAN2-ADA pickles: common.stylegan2.legacy)")
        raise UnsafePickleError(f"refusing global {module}.{name}: it is not part of a dnnlib TensorFlow pickle")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not part of a dnnlib TensorFlow pickle")


def read_official_pickle(path: str | os.PathLike) -> tuple[TFNetwork, ...]:
    """The networks of an official pickle as :class:`TFNetwork` records: ``(E, G, D, Gs)`` or ``(G, D, Gs)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(f"{path} is a zip archive (a torch.save file?), not an official TensorFlow pickle")
        if not head:
            raise CheckpointError(f"{path} is empty (0 bytes)")
        try:
            data = _TFPickleUnpickler(f, encoding="latin1").load()  # as training/misc.py:load_pkl
        except UnsafePickleError as err:
            raise UnsafePickleError(f"{path}: {err}") from None
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
        except Exception as err:  # noqa: BLE001 - a corrupt pickle raises UnpicklingError, EOFError, TypeError, ...
            raise CheckpointError(f"{path} is not a readable pickle ({type(err).__name__}: {err})") from None
    if isinstance(data, int) and data == 0x1950A86A20F9469CFC6C:  # torch.save's legacy format: this magic first
        raise CheckpointError(f"{path} is a legacy torch.save file, not an official TensorFlow pickle")
    if not isinstance(data, tuple) or len(data) not in (3, 4) or not all(isinstance(n, _PickledNetwork) for n in data):
        found = f"a {type(data).__name__}"
        if isinstance(data, tuple):
            found = f"a tuple of {len(data)}" + (" that are not all Networks" if len(data) in (3, 4) else "")
        raise CheckpointError(f"{path} holds {found}, expected the Networks the official code writes: {TUPLES}")
    return tuple(net.record for net in data)


def official_name(key: str) -> str | None:
    """The official variable (relative to E's scope) behind a ``GHFeatEncoder`` state-dict key; None for
    ``num_batches_tracked`` (no counterpart). See the module docstring for the rule."""
    *path, leaf = key.split(".")
    if leaf == "num_batches_tracked":
        return None
    scope, is_bn = _official_scope(path)
    if is_bn:
        return f"{scope}/batch_norm/{_BN_LEAVES[leaf]}"
    if leaf not in ("weight", "bias"):
        raise KeyError(f"no official variable for {key}")
    return f"{scope}/{leaf}"


def _official_scope(path: list[str]) -> tuple[str, bool]:
    """(official variable scope, is a BatchNorm) of a GHFeatEncoder module path."""
    head, rest = path[0], path[1:]
    if head in ("stem_conv", "stem_bn"):
        return "Conv0", head == "stem_bn"
    if head == "stages":
        scope, is_bn = _unit_scope(rest[2:])
        return f"stage{int(rest[0]) + 1}_unit{int(rest[1]) + 1}/{scope}", is_bn
    if head == "stage5":
        scope, is_bn = _unit_scope(rest)
        return f"stage5/{scope}", is_bn
    index = int(rest[0])
    scopes = {"laterals": f"fpn/lconv_{index + 3}", "fpn_out": f"fpn/fconv_{index}", "fuse": f"fuse_conv_{index}",
              "heads": _HEADS[index], "head_bns": _HEADS[index]}
    return scopes[head], head == "head_bns"


def _unit_scope(path: list[str]) -> tuple[str, bool]:
    """Within a residual unit: conva/bna -> Conva, ..., shortcut.0 (conv) / shortcut.1 (BN) -> Shortcut."""
    if path[0] == "shortcut":
        return "Shortcut", path[1] == "1"
    return "Conv" + path[0][-1], path[0].startswith("bn")


def _shape(E: TFNetwork, name: str) -> tuple[int, ...]:
    if name not in E.variables:
        raise CheckpointError(f"network '{E.name}' has no variable {name}: not an official Encoder, or a damaged one")
    return tuple(E.variables[name].shape)


def encoder_kwargs(E: TFNetwork) -> dict[str, Any]:
    """``GHFeatEncoder`` arguments inferred from the official variable shapes (the official graph always has a
    7x7/2 stem with max-pool, and 4 stages at depths 18-101; smaller widths are read from the shapes too)."""
    stages = 0
    while f"stage{stages + 1}_unit1/Conva/weight" in E.variables:
        stages += 1
    if stages < 2:
        raise CheckpointError(f"network '{E.name}' ({E.build_func_name}) has no stage{stages + 1}_unit1/Conva/weight:"
                              " not an official networks_ghfeat.Encoder")
    units = []
    for s in range(1, stages + 1):
        count = 1
        while f"stage{s}_unit{count + 1}/Conva/weight" in E.variables:
            count += 1
        units.append(count)
    filters = [_shape(E, "Conv0/weight")[3]] + [_shape(E, f"stage{s}_unit1/Shortcut/weight")[3]
                                                for s in range(1, stages + 1)]
    bottleneck = "stage1_unit1/Convc/weight" in E.variables
    fpn_channels = _shape(E, "fpn/lconv_3/weight")[3]
    flat, _ = _shape(E, "LowLevel/weight")
    side = int(round((flat / fpn_channels) ** 0.5))
    if side * side * fpn_channels != flat:
        raise CheckpointError(f"network '{E.name}': LowLevel/weight takes {flat} inputs, not a square map of "
                              f"{fpn_channels} channels")
    resolution = side * 4 * 2 ** (stages - 1) * 2  # stem /4, stages 2.. at /2, the extra stage /2
    size = E.static_kwargs.get("size", resolution)
    if size != resolution:
        raise CheckpointError(f"network '{E.name}': static_kwargs size={size} but its heads take {side}x{side} maps "
                              f"of a {resolution} px input")
    depth = next((d for d, spec in DEPTHS.items() if spec == (filters, units, bottleneck)), None)
    group_dims = tuple(_shape(E, f"{head}/weight")[1] for head in reversed(_HEADS))  # coarse, middle, fine
    return dict(depth=depth, group_dims=group_dims, fpn_channels=fpn_channels, resolution=resolution,
                filters=filters, units=units, bottleneck=bottleneck, stem_stride=4,
                extra_channels=_shape(E, "stage5/Shortcut/weight")[3])


def _torch_layout(value: np.ndarray) -> np.ndarray:
    """A view in PyTorch's layout: conv HWIO -> OIHW, dense [in, out] -> [out, in]."""
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value.T if value.ndim == 2 else value


def encoder_state_dict(E: TFNetwork, kwargs: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """E's variables under ``GHFeatEncoder`` state-dict names, in PyTorch layout (NumPy views, nothing copied),
    checked strictly against an encoder built on the meta device from ``kwargs`` (default: :func:`encoder_kwargs`).
    A missing, unexpected or mis-shaped variable is one line naming it."""
    kwargs = encoder_kwargs(E) if kwargs is None else kwargs
    try:
        with torch.device("meta"):
            expected = GHFeatEncoder(**kwargs).state_dict()
    except ValueError as err:
        raise CheckpointError(f"network '{E.name}': {err}") from None
    names = {official_name(key): key for key in expected if not key.endswith("num_batches_tracked")}
    missing = [name for name in names if name not in E.variables]
    unexpected = [name for name in E.variables if name not in names]
    if missing or unexpected:
        found = f"missing variable {missing[0]}" if missing else f"unexpected variable {unexpected[0]}"
        count = len(missing) + len(unexpected)
        more = f" ({count} missing or unexpected in all)" if count > 1 else ""
        raise CheckpointError(f"network '{E.name}': {found}{more}; not the official Encoder of these widths")
    out = {}
    for name, key in names.items():
        value = _torch_layout(E.variables[name])
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"network '{E.name}': variable {name} has shape {tuple(E.variables[name].shape)}, "
                                  f"which does not fit {key} {tuple(expected[key].shape)} (PyTorch layout)")
        out[key] = value
    return out


def load_official_encoder(source: TFNetwork | str | os.PathLike) -> GHFeatEncoder:
    """A ``GHFeatEncoder`` (eval mode) holding the official E: a :class:`TFNetwork` record or the path of an
    ``(E, G, D, Gs)`` pickle. Widths come from the stored shapes; every variable is loaded strictly."""
    if not isinstance(source, TFNetwork):
        networks = read_official_pickle(source)
        if len(networks) != 4:
            raise CheckpointError(f"{source} holds (G, D, Gs), a generator pickle without an encoder; give an "
                                  "(E, G, D, Gs) GH-Feat pickle")
        source = networks[0]
    kwargs = encoder_kwargs(source)
    arrays = encoder_state_dict(source, kwargs)
    encoder = GHFeatEncoder(**kwargs)
    state = encoder.state_dict()  # keeps num_batches_tracked (no official counterpart)
    for key, value in arrays.items():
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


@torch.no_grad()
def extract_ghfeat(encoder: GHFeatEncoder, images: Tensor) -> Tensor:
    """GH-Feat as ``extract_ghfeat.py`` computes it: ``E.get_output_for(x, is_training=False)`` (BN on its moving
    statistics) on images (N, 3, H, W) in [-1, 1] (``x / 255 * 2 - 1``), as the official (N, 14, 1024) codes."""
    if tuple(encoder.group_dims) != STYLEGAN_V1_256:
        raise ValueError(f"the official [N, 14, 1024] layout needs heads {STYLEGAN_V1_256}, got {encoder.group_dims}")
    was_training = encoder.training
    codes = official_layout(*encoder.eval()(images))
    encoder.train(was_training)
    return codes

