"""Official GH-Feat TF pickles (genforce/ghfeat) read without TensorFlow and without running pickled code.

The fixture pickles what the official code pickles: ``dnnlib.tflib.network.Network`` objects whose state is that of
``dnnlib/tflib/network.py:Network.__getstate__``, written by ``training/misc.py:save_pkl`` (protocol 4). E's variables
are those that ``training/networks_ghfeat.py:Encoder`` creates, at a small width. The reference output below is a
transcription of that graph on the TF-layout arrays: NCHW, HWIO convolutions, ``[in, out]`` dense weights. It does not
use the importer's mapping or GHFeatEncoder.
"""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.checkpoint import CheckpointError
from ghfeat import official
from ghfeat.encoder import DEPTHS, STYLEGAN_V1_256, GHFeatEncoder
from ghfeat.official import TFNetwork, UnsafePickleError

OFFICIAL_GROUPS = {"HighLevel": 4096, "MidLevel": 4096, "LowLevel": 1792}  # dsize sums in Encoder()
SMALL = {  # official naming and structure (4 stages, 7x7/2 stem + max-pool) at small widths, 128 px: 2x2 head maps
    "bottleneck": dict(filters=[8, 16, 16, 32, 32], units=[2, 1, 1, 1], bottleneck=True),
    "basic": dict(filters=[8, 8, 16, 16, 32], units=[2, 1, 1, 1], bottleneck=False),
}
SMALL_EXTRA, SMALL_FPN, SMALL_SIZE = 32, 8, 128
MARKER_SRC = "import pathlib\npathlib.Path({!r}).touch()\n"


# --- what the official code writes -------------------------------------------------------------------------------


class Network:
    """Pickles as ``dnnlib.tflib.network.Network`` with the official ``__getstate__`` (version 3)."""

    __module__ = "dnnlib.tflib.network"
    __qualname__ = "Network"

    def __init__(self, name, build_func_name, static_kwargs, variables, components=None, src="# networks module"):
        self.name, self._build_func_name, self.static_kwargs = name, build_func_name, static_kwargs
        self.own_vars, self.components, self._build_module_src = dict(variables), components or {}, src

    def __getstate__(self) -> dict:
        state = dict()
        state["version"] = 3
        state["name"] = self.name
        state["static_kwargs"] = dict(self.static_kwargs)
        state["components"] = dict(self.components)
        state["build_module_src"] = self._build_module_src
        state["build_func_name"] = self._build_func_name
        state["variables"] = list(zip(self.own_vars.keys(), self.own_vars.values()))  # tfutil.run: arrays / scalars
        return state


def _save_pkl(obj, path: Path, protocol: int = 4) -> Path:
    """``training/misc.py:save_pkl`` (pickle.HIGHEST_PROTOCOL, 4 on the official Python 3.6), with the
    ``dnnlib.tflib.network`` module present only while dumping."""
    modules = {name: types.ModuleType(name) for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    modules["dnnlib.tflib.network"].Network = Network
    with mock.patch.dict(sys.modules, modules), open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def _bn_vars(scope, c):  # sync_batch_norm(scope='batch_norm'): creation order of tf.get_variable
    return [(f"{scope}/batch_norm/{leaf}", (c,)) for leaf in ("moving_mean", "moving_variance", "gamma", "beta")]


def _conv_vars(scope, k, cin, cout, bias=True):  # get_weight [k, k, in, out] (HWIO), apply_bias [out]
    return [(f"{scope}/weight", (k, k, cin, cout))] + ([(f"{scope}/bias", (cout,))] if bias else [])


def _unit_vars(scope, cin, cout, project, bottleneck):
    """``bottleneck()`` / ``basicblock()``: Shortcut (only when not dim_match, no bias), Conva, Convb[, Convc]."""
    out = []
    if project:
        out += _conv_vars(f"{scope}/Shortcut", 1, cin, cout, bias=False) + _bn_vars(f"{scope}/Shortcut", cout)
    if bottleneck:
        hidden = int(cout * 0.25)
        for conv, k, a, b in (("Conva", 1, cin, hidden), ("Convb", 3, hidden, hidden), ("Convc", 1, hidden, cout)):
            out += _conv_vars(f"{scope}/{conv}", k, a, b) + _bn_vars(f"{scope}/{conv}", b)
    else:
        for conv, a in (("Conva", cin), ("Convb", cout)):
            out += _conv_vars(f"{scope}/{conv}", 3, a, cout) + _bn_vars(f"{scope}/{conv}", cout)
    return out


def official_encoder_variables(filters, units, bottleneck, extra=2048, fpn=512, side=4):
    """(name, shape) of the variables ``Encoder()`` creates, relative to E's scope, in creation order."""
    out = _conv_vars("Conv0", 7, 3, filters[0], bias=False) + _bn_vars("Conv0", filters[0])
    cin = filters[0]
    for i, count in enumerate(units):
        for j in range(count):
            out += _unit_vars(f"stage{i + 1}_unit{j + 1}", cin, filters[i + 1], j == 0, bottleneck)
            cin = filters[i + 1]
    out += _unit_vars("stage5", cin, extra, True, True)  # residual_unit(..., 'bottleneck', 2048, scope='stage5')
    for i, c in zip((3, 4, 5), (filters[3], filters[4], extra)):
        out += _conv_vars(f"fpn/lconv_{i}", 3, c, fpn)
    for scope in ("fpn/fconv_0", "fpn/fconv_1", "fpn/fconv_2", "fuse_conv_0", "fuse_conv_1", "fuse_conv_2"):
        out += _conv_vars(scope, 3, fpn, fpn)
    for head, dim in OFFICIAL_GROUPS.items():  # dense(x, fmaps): weight [C*H*W, fmaps], then bias and BN
        out += [(f"{head}/weight", (fpn * side * side, dim)), (f"{head}/bias", (dim,))] + _bn_vars(head, dim)
    return out


def _random_arrays(names_shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in names_shapes:
        leaf = name.split("/")[-1]
        if leaf == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "gamma":
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif leaf in ("beta", "bias", "moving_mean"):
            value = 0.2 * rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        arrays[name] = value.astype(np.float32)
    return arrays


def _small_encoder_arrays(kind):
    spec = SMALL[kind]
    return _random_arrays(official_encoder_variables(**spec, extra=SMALL_EXTRA, fpn=SMALL_FPN, side=2))


def _generator_networks():
    """StyleGAN v1 G_style (mapping + synthesis components), D_basic and Gs (G.clone('Gs')), tiny widths."""
    rng = np.random.default_rng(1)

    def g(name):
        mapping = Network("G_mapping", "G_mapping", {"dlatent_size": 8},
                          {"Dense0/weight": rng.standard_normal((8, 8), np.float32),
                           "Dense0/bias": np.zeros(8, np.float32)})
        synthesis = Network("G_synthesis", "G_synthesis", {"dlatent_size": 8, "resolution": 256},
                            {"4x4/Const/const": rng.standard_normal((1, 8, 4, 4), np.float32),
                             "4x4/Const/Noise/weight": np.zeros(8, np.float32), "noise0": np.zeros((1, 1, 4, 4),
                                                                                                   np.float32)})
        return Network(name, "G_style", {"num_channels": 3, "resolution": 256, "label_size": 0},
                       {"lod": np.float32(0.0), "dlatent_avg": np.zeros(8, np.float32)},  # 0-d: a NumPy scalar
                       components={"mapping": mapping, "synthesis": synthesis})

    D = Network("D", "D_basic", {"num_channels": 3, "resolution": 256, "label_size": 0},
                {"lod": np.float32(0.0), "4x4/Conv/weight": rng.standard_normal((3, 3, 8, 8), np.float32)})
    return g("G"), D, g("Gs")


def _encoder_network(arrays, src="# networks_ghfeat.py"):
    static = dict(size=SMALL_SIZE, filter=64, filter_max=512, num_layers=14, is_training=True, num_gpus=8, depth=50)
    return Network("E_gpu0", "Encoder", static, arrays, src=src)  # training_loop_ghfeat.py: tflib.Network('E_gpu0')


# --- the official graph, transcribed from training/networks_ghfeat.py ---------------------------------------------


def _same(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def _tf_conv2d(x, w, stride=1):
    """``conv2d``: tf.nn.conv2d(padding='SAME', data_format='NCHW') with an HWIO kernel, as a sum over taps."""
    k = w.shape[0]
    out, lo, hi = _same(x.shape[2], k, stride)
    x = F.pad(x, (lo, hi, lo, hi))
    y = 0
    for a in range(k):
        for b in range(k):
            patch = x[:, :, a : a + stride * (out - 1) + 1 : stride, b : b + stride * (out - 1) + 1 : stride]
            y = y + torch.einsum("nchw,co->nohw", patch, w[a, b])
    return y


def _lrelu(x):  # leaky_relu(): tf.maximum(x * 0.2, x)
    return torch.maximum(x * 0.2, x)


def _relu(x):  # relu(): tf.maximum(0.0, x)
    return x.clamp_min(0.0)


class _Reference:
    """``Encoder(..., is_training=False)`` (extract_ghfeat.py) on the TF-layout arrays, in float64."""

    def __init__(self, arrays):
        self.v = {name: torch.from_numpy(value.astype(np.float64)) for name, value in arrays.items()}

    def conv(self, x, scope, stride=1, bias=True):
        y = _tf_conv2d(x, self.v[f"{scope}/weight"], stride)
        return y + self.v[f"{scope}/bias"].reshape(1, -1, 1, 1) if bias else y

    def bn(self, x, scope):  # tf.nn.batch_normalization on the moving statistics, epsilon 1e-5
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
        p = {leaf: self.v[f"{scope}/batch_norm/{leaf}"].reshape(shape)
             for leaf in ("moving_mean", "moving_variance", "gamma", "beta")}
        return (x - p["moving_mean"]) / torch.sqrt(p["moving_variance"] + 1e-5) * p["gamma"] + p["beta"]

    def unit(self, x, scope, stride, dim_match, bottleneck):
        skip = x if dim_match else self.bn(self.conv(x, f"{scope}/Shortcut", stride, bias=False), f"{scope}/Shortcut")
        if not bottleneck:  # basicblock: conv -> bias -> LeakyReLU -> BN, twice; no activation after the add
            net = self.bn(_lrelu(self.conv(x, f"{scope}/Conva", stride)), f"{scope}/Conva")
            return self.bn(_lrelu(self.conv(net, f"{scope}/Convb")), f"{scope}/Convb") + skip
        net = _relu(self.bn(self.conv(x, f"{scope}/Conva"), f"{scope}/Conva"))
        net = _relu(self.bn(self.conv(net, f"{scope}/Convb", stride), f"{scope}/Convb"))
        return _relu(self.bn(self.conv(net, f"{scope}/Convc"), f"{scope}/Convc") + skip)

    def __call__(self, x, units, bottleneck):
        net = _lrelu(self.bn(self.conv(x, "Conv0", 2, bias=False), "Conv0"))
        _, lo, hi = _same(net.shape[2], 3, 2)  # tf.nn.max_pool(ksize 3, stride 2, 'SAME')
        net = F.max_pool2d(F.pad(net, (lo, hi, lo, hi), value=-float("inf")), 3, 2)
        res = []
        for i, count in enumerate(units):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                net = self.unit(net, f"stage{i + 1}_unit{j + 1}", stride, j > 0, bottleneck)
            res.append(net)
        res6 = self.unit(net, "stage5", 2, False, True)
        laterals = [self.conv(level, f"fpn/lconv_{i}") for i, level in zip((3, 4, 5), (res[2], res[3], res6))]
        for i in (2, 1):  # upscale2d: nearest, by reshape + tile
            up = laterals[i].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
            laterals[i - 1] = laterals[i - 1] + up
        outs = [self.conv(lat, f"fpn/fconv_{i}") for i, lat in enumerate(laterals)]
        for i in range(2):  # sam(): recurrent 2x2 average pooling
            for j in range(0, 2 - i):
                outs[j] = F.avg_pool2d(outs[j], 2)
        outs = [self.conv(o, f"fuse_conv_{i}") for i, o in enumerate(outs)]
        res4, res5, res6 = outs[0] + outs[2], outs[1] + outs[2], outs[2]
        n = x.shape[0]

        def head(level, scope):  # dense(): tf.reshape(x, [-1, C*H*W]) of the NCHW map, matmul [in, out]
            return self.bn(level.reshape(n, -1) @ self.v[f"{scope}/weight"] + self.v[f"{scope}/bias"], scope)

        w0 = head(res6, "HighLevel").reshape(n, 4, 1024)
        w1 = head(res5, "MidLevel").reshape(n, 4, 1024)
        w2 = head(res4, "LowLevel")
        w20 = torch.cat([w2[:, :1024].reshape(n, 2, 512)] * 2, dim=2)  # tf.tile(..., [1, 1, 1024 // 512])
        w21 = torch.cat([w2[:, 1024:1536].reshape(n, 2, 256)] * 4, dim=2)
        w22 = torch.cat([w2[:, 1536:].reshape(n, 2, 128)] * 8, dim=2)
        return torch.cat([w0, w1, w20, w21, w22], dim=1)  # Latent_out: [N, 14, 1024]


# --- tests --------------------------------------------------------------------------------------------------------


class _Recording(official._TFPickleUnpickler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.found = set()

    def find_class(self, module, name):
        self.found.add((module, name))
        return super().find_class(module, name)


@pytest.mark.parametrize("kind", ["bottleneck", "basic"])
def test_official_encoder_pickle_gives_the_official_graphs_ghfeat(tmp_path, kind):
    arrays = _small_encoder_arrays(kind)
    marker = tmp_path / "src-ran"
    path = _save_pkl((_encoder_network(arrays, MARKER_SRC.format(str(marker))), *_generator_networks()),
                     tmp_path / "network-snapshot-000012.pkl")
    with open(path, "rb") as f:
        recording = _Recording(f)
        recording.load()
    found = {(module.replace("numpy.core", "numpy._core"), name) for module, name in recording.found}  # NumPy 1 or 2
    assert found == {("dnnlib.tflib.network", "Network"), ("numpy", "ndarray"), ("numpy", "dtype"),
                     ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar")}

    E, G, D, Gs = official.read_official_pickle(path)
    assert (E.name, E.build_func_name, E.static_kwargs["size"], E.version) == ("E_gpu0", "Encoder", SMALL_SIZE, 3)
    assert list(E.variables) == list(arrays)  # creation order kept
    assert E.build_module_src.startswith("import pathlib")
    encoder = official.load_official_encoder(path)
    assert not marker.exists()  # the pickled module source is kept as text, never executed

    spec = SMALL[kind]
    expected_kwargs = dict(depth=None, group_dims=STYLEGAN_V1_256, fpn_channels=SMALL_FPN, resolution=SMALL_SIZE,
                           stem_stride=4, extra_channels=SMALL_EXTRA, **spec)
    assert official.encoder_kwargs(E) == expected_kwargs
    assert not encoder.training and encoder.head_size == 2  # 2x2 maps: the dense flatten order matters
    x = torch.rand(2, 3, SMALL_SIZE, SMALL_SIZE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        expected = _Reference(arrays)(x * 2 - 1, spec["units"], spec["bottleneck"])
    codes = official.extract_ghfeat(encoder, (x * 2 - 1).float())
    assert codes.shape == (2, 14, 1024) and codes.dtype == torch.float32
    torch.testing.assert_close(codes.double(), expected, rtol=0, atol=2e-3)  # float32 through ~20 layers
    codes = official.extract_ghfeat(encoder.double(), x * 2 - 1)  # the same weights in float64: equal to 1e-10
    torch.testing.assert_close(codes, expected, rtol=0, atol=1e-10)

    assert (G.build_func_name, G.components["synthesis"].name, D.build_func_name, Gs.name) == (
        "G_style", "G_synthesis", "D_basic", "Gs")
    assert G.variables["lod"].dtype == np.float32 and G.variables["lod"].shape == ()
    assert G.vars["G_synthesis/4x4/Const/const"].shape == (1, 8, 4, 4)  # Network.vars: <component name>/<var>
    assert G.static_kwargs == {"num_channels": 3, "resolution": 256, "label_size": 0}


@pytest.mark.parametrize("protocol", [2, 5])
def test_generator_pickle_reads_under_other_protocols(tmp_path, protocol):
    networks = _generator_networks()
    G, D, Gs = official.read_official_pickle(_save_pkl(networks, tmp_path / "stylegan.pkl", protocol))
    for record, net in zip((G, D, Gs), networks):
        assert list(record.variables) == list(net.own_vars)
        for name, value in net.own_vars.items():
            assert record.variables[name].dtype == np.float32
            np.testing.assert_array_equal(record.variables[name], value)
    assert set(G.components) == {"mapping", "synthesis"}


@pytest.mark.parametrize("depth, trainable", [(50, 151_766_976), (18, 124_871_872)])
def test_official_depths_map_one_to_one_without_allocating(depth, trainable):
    """Every variable the official graph creates at 256 px has exactly one GHFeatEncoder entry of that shape."""
    filters, units, bottleneck = DEPTHS[depth]
    names_shapes = official_encoder_variables(filters, units, bottleneck)
    moving = sum(int(np.prod(s)) for n, s in names_shapes if "moving_" in n)
    assert sum(int(np.prod(s)) for n, s in names_shapes if "moving_" not in n) == trainable  # spec §3.3
    if depth == 50:
        assert moving == 83_328
    zero = np.zeros((), np.float32)
    record = TFNetwork("E_gpu0", "Encoder", {"size": 256, "depth": depth},
                       {name: np.broadcast_to(zero, shape) for name, shape in names_shapes})  # shapes, no memory
    kwargs = official.encoder_kwargs(record)
    assert kwargs == dict(depth=depth, group_dims=STYLEGAN_V1_256, fpn_channels=512, resolution=256, filters=filters,
                          units=units, bottleneck=bottleneck, stem_stride=4, extra_channels=2048)
    with torch.device("meta"):
        state = GHFeatEncoder(depth=depth).state_dict()
    keys = [k for k in state if not k.endswith("num_batches_tracked")]
    by_name = {official.official_name(k): k for k in keys}
    assert len(by_name) == len(keys) and set(by_name) == {n for n, _ in names_shapes}  # one-to-one
    torch_layout = {4: (3, 2, 0, 1), 2: (1, 0), 1: (0,)}  # HWIO -> OIHW, [in, out] -> [out, in]
    for name, shape in names_shapes:
        assert tuple(state[by_name[name]].shape) == tuple(shape[i] for i in torch_layout[len(shape)]), name
    views = official.encoder_state_dict(record, kwargs)
    assert {k: tuple(v.shape) for k, v in views.items()} == {k: tuple(state[k].shape) for k in keys}


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_global_outside_the_format_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = _save_pkl((_RunsCode(marker), *_generator_networks()), tmp_path / "evil.pkl")
    with pytest.raises(UnsafePickleError, match=r"refusing global (posix|os|nt)\.system") as excinfo:
        official.read_official_pickle(path)
    _one_line(excinfo)
    assert not marker.exists()
    calls_class = tmp_path / "calls.pkl"  # a pickle that calls the Network class instead of restoring its state
    calls_class.write_bytes(b"\x80\x04cdnnlib.tflib.network\nNetwork\n)R.")
    with pytest.raises(UnsafePickleError, match="rebuilt from its state only") as excinfo:
        official.read_official_pickle(calls_class)
    _one_line(excinfo)


def test_files_that_are_not_official_pickles_fail_in_one_line(tmp_path):
    generators = _save_pkl(_generator_networks(), tmp_path / "stylegan-ffhq-256.pkl")
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    with open(tmp_path / "stylegan2-ada.pkl", "wb") as f:
        pickle.dump({"G_ema": torch.zeros(2)}, f)
    (tmp_path / "notes.txt").write_text("not a pickle")
    cases = [
        (_save_pkl(_generator_networks()[:2], tmp_path / "two.pkl"), CheckpointError, r"tuple of 2, expected .*"
                                                                                       r"\(E, G, D, Gs\)"),
        (tmp_path / "weights.pt", CheckpointError, "zip archive"),
        (tmp_path / "stylegan2-ada.pkl", UnsafePickleError, "a PyTorch pickle"),
        (tmp_path / "notes.txt", CheckpointError, "not a readable pickle"),
        (tmp_path / "missing.pkl", CheckpointError, "no file at"),
        (generators, CheckpointError, r"\(G, D, Gs\), a generator pickle without an encoder"),
    ]
    for path, error, message in cases:
        with pytest.raises(error, match=message) as excinfo:
            official.load_official_encoder(path)
        _one_line(excinfo)


@pytest.mark.parametrize("change, message", [
    ("drop fpn/fconv_1/bias", "missing variable fpn/fconv_1/bias"),
    ("drop LowLevel/batch_norm/moving_variance", "missing variable LowLevel/batch_norm/moving_variance"),
    ("add stage1_unit1/Convd/weight", "unexpected variable stage1_unit1/Convd/weight"),
    ("reshape fuse_conv_0/weight", r"fuse_conv_0/weight has shape \(3, 3, 8, 4\)"),
    ("drop Conv0/weight", "has no variable Conv0/weight"),
    ("size 256", "size=256 but its heads take 2x2 maps of a 128 px input"),
])
def test_a_damaged_encoder_fails_in_one_line_naming_the_variable(change, message):
    arrays = _small_encoder_arrays("bottleneck")
    static = {"size": SMALL_SIZE}
    verb, target = change.split(" ")
    if verb == "drop":
        del arrays[target]
    elif verb == "add":
        arrays[target] = np.zeros((1, 1, 8, 8), np.float32)
    elif verb == "reshape":
        arrays[target] = arrays[target][..., :4]
    else:
        static = {"size": int(target)}
    record = TFNetwork("E_gpu0", "Encoder", static, arrays)
    with pytest.raises(CheckpointError, match=message) as excinfo:
        official.load_official_encoder(record)
    _one_line(excinfo)


def test_eval_extract_reads_an_official_encoder_and_writes_the_official_layout(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from ghfeat import eval as ghfeat_eval

    arrays = _small_encoder_arrays("bottleneck")
    path = _save_pkl((_encoder_network(arrays), *_generator_networks()), tmp_path / "ghfeat-encoder-test-128.pkl")
    names = []
    for i, side in enumerate((128, 100)):  # the second is resized to E's input, as extract_ghfeat.py does
        names.append(tmp_path / f"{i:06d}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(names[-1])
    image_list = tmp_path / "image.list.txt"
    image_list.write_text("".join(f"{n}\n" for n in names))
    out = tmp_path / "out"
    result = CliRunner().invoke(ghfeat_eval.main, ["extract", "--encoder", str(path), "--images", str(image_list),
                                                   "-o", str(out)])
    assert result.exit_code == 0, result.output
    feats = np.load(out / "ghfeat.npy")
    assert feats.shape == (2, 14, 1024)
    x = torch.from_numpy(np.array(Image.open(names[0]).convert("RGB"))).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = official.extract_ghfeat(official.load_official_encoder(path), x)[0].numpy()
    np.testing.assert_allclose(feats[0], expected, rtol=1e-5, atol=1e-4)  # float32 sums in another order
    result = CliRunner().invoke(ghfeat_eval.main, ["reconstruct", "--encoder", str(path), "--images",
                                                   str(image_list), "--out", str(tmp_path / "r.png")])
    assert result.exit_code != 0 and "StyleGAN v1 G" in result.output and not (tmp_path / "r.png").exists()
