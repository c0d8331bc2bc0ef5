"""The extension points of common.stylegan2 (networks: weight/input hooks, styles, D features; loop: network
building, trainable parameters, init_from, scalars; snapshots: load_networks). Each hook is used once, and with
every hook unused the networks reproduce the outputs written before the hooks existed (stylegan2_golden.pt)."""

from __future__ import annotations

import json
import math

import pytest
import stylegan2_golden
import torch
import torch.nn.functional as F
from official_pickles import write_official_pickle
from toy_method import KEPT, InjectedBias, ToyMethod

from common.checkpoint import CheckpointError, load_checkpoint
from common.config import load_config
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.stylegan2.method import LoopState, Method, NetworkShape
from common.stylegan2.networks import Conv2dLayer, Discriminator, FullyConnectedLayer, Generator, MappingNetwork
from common.stylegan2.snapshot import load_networks, resolve_method
from common.stylegan2.training import replace_cfg, train, update_ema


def _close(a, b) -> None:
    """Exact on this machine (measured); a tolerance of float rounding guards against another CPU's kernels."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _close(a[key], b[key])
    elif isinstance(a, list):
        assert a == b
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_unused_hooks_keep_outputs_gradients_and_keys_of_the_networks_before_them():
    golden = torch.load(stylegan2_golden.GOLDEN, weights_only=True)
    now = stylegan2_golden.compute()
    assert golden.keys() == now.keys()
    for key in golden:
        _close(now[key], golden[key])


def _small_g(**kwargs) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                     synthesis_kwargs={"channel_base": 1024, "channel_max": 64, **kwargs}).eval()


def _small_d(resolution: int = 32, **kwargs) -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=1024, channel_max=64,
                         epilogue_kwargs={"mbstd_group_size": 2}, **kwargs).eval()


# ---------------------------------------------------------------------------------------------------------------
# networks.py access points


def test_identity_weight_hook_changes_nothing_and_a_mask_reaches_the_fc_fast_path():
    D = _small_d()
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        plain = D(img, None)
        layers = [m for m in D.modules() if isinstance(m, (Conv2dLayer, FullyConnectedLayer))]
        for layer in layers:
            layer.weight_hook = lambda layer, w: w * layer.weight_gain
        assert torch.equal(D(img, None), plain)
        D.b4.out.weight_hook = lambda layer, w: torch.zeros_like(w)  # 'linear' + bias: the addmm fast path
        assert torch.equal(D(img, None), D.b4.out.bias.expand(4, 1))


def test_weight_hook_masks_a_conv_with_the_recomputed_fan_in_gain():
    """DynamicD first-k at r = 0.5 on b16.conv0 (64 -> 64, 3x3): output = conv with the kept [32, 32] block and gain
    1 / sqrt(32 * 9) (spec dynamicd.md §2.1), masked weights get exactly zero gradient."""
    layer = _small_d().b16.conv0
    kept = 32

    def first_half(layer, w):
        mask = torch.zeros_like(w)
        mask[:kept, :kept] = 1
        return w * mask / math.sqrt(kept * 9)

    layer.weight_hook = first_half
    x = torch.randn(2, 64, 16, 16)
    out = layer(x)
    w = layer.weight[:kept, :kept] / math.sqrt(kept * 9)
    expected = F.leaky_relu(F.conv2d(x[:, :kept], w, layer.bias[:kept], padding=1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(out[:, :kept], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, kept:], torch.zeros_like(out[:, kept:]))  # bias 0 at init, lrelu(0) = 0
    layer.weight.requires_grad_(True)
    layer(x).square().sum().backward()
    assert layer.weight.grad[kept:].abs().max() == 0 and layer.weight.grad[:, kept:].abs().max() == 0
    assert layer.weight.grad[:kept, :kept].abs().max() > 0


def test_freeze_d_layer_index_on_every_block_layer():
    """Spec dynamicd.md §2.2/§7: first block fromrgb, conv0, conv1, skip; later blocks conv0, conv1, skip."""
    D = _small_d()
    layers = [(name, m) for name, m in D.named_modules() if isinstance(m, Conv2dLayer)]
    indices = {name: m.layer_idx for name, m in layers if m.layer_idx is not None}
    assert indices == {"b32.fromrgb": 0, "b32.conv0": 1, "b32.conv1": 2, "b32.skip": 3, "b16.conv0": 4,
                       "b16.conv1": 5, "b16.skip": 6, "b8.conv0": 7, "b8.conv1": 8, "b8.skip": 9}
    assert D.b4.conv.layer_idx is None and D.b4.fc.layer_idx is None
    cfg = resolve(load_config(StyleGAN2Config, preset_path("paper256")), 256, gpus=8)
    big = build_discriminator(cfg, 256, 3, 0)
    assert (big.b256.skip.layer_idx, big.b128.conv0.layer_idx, big.b64.skip.layer_idx, big.b8.skip.layer_idx) == (
        3, 4, 9, 18)


def test_input_hook_runs_before_the_modulated_conv_with_its_block_input():
    G = _small_g()
    z = torch.randn(3, 16)
    with torch.no_grad():
        ws = G.mapping(z, None)
        plain = G.synthesis(ws, noise_mode="const")
    for res in G.synthesis.block_resolutions:
        for layer in getattr(G.synthesis, f"b{res}").modulated_layers():
            layer.set_input_hook(InjectedBias(), name="sel")
    assert "synthesis.b8.torgb.sel.strength" in G.state_dict()  # keys under the name the caller chose
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws, noise_mode="const"), plain)  # strength 0
        G.synthesis.b16.conv0.sel.strength.fill_(1.0)
        seen = G.synthesis(ws, noise_mode="const", layer_inputs={"b16": torch.full([1], 0.5)})
        again = G.synthesis(ws, noise_mode="const", layer_inputs={"b8": torch.full([1], 0.5)})
    assert not torch.equal(seen, plain)  # b16.conv0 received 0.5 ...
    assert not torch.equal(again, seen)  # ... and without it, 1.0 (the hook's default), not 0.5
    with pytest.raises(ValueError, match="already has an input hook"):
        G.synthesis.b16.conv0.set_input_hook(InjectedBias())


def test_synthesis_from_styles_equals_synthesis_from_ws():
    """S space of the tiny32 widths: 11 modulated layers, 9 x 64 + 2 x 32 = 640 dims (spec ghfeat.md §8)."""
    G = _small_g()
    dims = G.synthesis.style_dims()
    assert list(dims)[:5] == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb"]
    assert len(dims) == 11 and sum(dims.values()) == 640
    ws = G.mapping(torch.randn(3, 16), None)
    styles = G.synthesis.compute_styles(ws)
    assert [s.shape[1] for s in styles] == list(dims.values())
    with torch.no_grad():
        assert torch.equal(G.synthesis(None, styles=styles, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
        shifted = [s.clone() for s in styles]
        shifted[-1] += 1.0
        moved = G.synthesis(None, styles=shifted, noise_mode="const")
        assert not torch.equal(moved, G.synthesis(ws, noise_mode="const"))
    with pytest.raises(ValueError, match="expected 11 styles"):
        G.synthesis(None, styles=styles[:-1])
    with pytest.raises(ValueError, match="either ws or styles"):
        G.synthesis(ws, styles=styles)


def test_discriminator_returns_named_block_outputs_and_the_epilogue_hidden():
    D = _small_d()
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits, feats = D(img, None, return_features=["b32", "b8", "fc"])
        assert torch.equal(logits, D(img, None))
        assert [tuple(f.shape) for f in feats.values()] == [(4, 64, 16, 16), (4, 64, 4, 4), (4, 64)]
        x, _ = D.b32(None, img)
        assert torch.equal(feats["b32"], x)
        hidden = D.b4.fc(D.b4.conv(D.b4.mbstd(feats["b8"])).flatten(1))
        assert torch.equal(feats["fc"], hidden) and torch.equal(D.b4.out(hidden), logits)
    assert D.feature_names() == ["b32", "b16", "b8", "fc"]
    with pytest.raises(ValueError, match="unknown D feature.s. b4; choose from b32, b16, b8, fc"):
        D(img, None, return_features=["b4"])


def test_mapping_with_zero_layers_is_the_normalised_label_embedding():
    """The official InsGen train.py builds a conditional D's mapping with 0 layers."""
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, w_avg_beta=None, num_layers=0)
    c = torch.eye(3)
    y = mapping.embed(c)
    assert torch.equal(mapping(None, c), y * (y.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt())
    assert not any(name.startswith("fc") for name, _ in mapping.named_children())


# ---------------------------------------------------------------------------------------------------------------
# the loop's hooks


def _cfg(**train) -> StyleGAN2Config:
    cfg = load_config(StyleGAN2Config, preset_path("tiny"))
    return replace_cfg(
        cfg,
        data={"source": "digits", "resolution": 8},
        G={"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16},
        D={"channel_base": 128, "channel_max": 16, "mbstd_group_size": 4},
        optim={"g_reg_interval": 2, "d_reg_interval": 2},
        augment={"mode": "noaug"},
        train={"batch": 8, "batch_gpu": 8, "total_kimg": 0.032, "kimg_per_tick": 0.016, "snap_ticks": 1,
               "metrics": ["none"], **train},
    )


def _states(state: LoopState) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, m in state.modules.items() for k, v in m.state_dict().items()}


class _Recorder:
    """Remembers the networks as the loop hands them to ``setup`` (after init_from)."""

    def setup(self, state: LoopState) -> None:
        self.at_setup = _states(state)


class _Recording(_Recorder, ToyMethod):
    pass


class _RecordingPlain(_Recorder, Method):
    pass


def test_toy_method_wraps_freezes_masks_and_injects_through_the_hooks(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    method = _Recording()
    state = train(_cfg(), tmp_path / "run", method=method)  # 4 iterations, G/D reg every 2nd
    before, after = method.at_setup, _states(state)
    G, D = state.G, state.D
    for name, p in G.named_parameters():
        trained = "scale" in name or "shift" in name or "inject" in name
        assert p.grad is None or trained, name  # frozen: never a gradient
        assert torch.equal(after[f"G.{name}"], before[f"G.{name}"]) != trained, name
    assert not torch.equal(after["G_ema.mapping.scale"], before["G_ema.mapping.scale"])  # the EMA follows the wrapper
    assert list(state.G_ema.state_dict()) == list(G.state_dict())
    for name, p in D.named_parameters():
        frozen = name.startswith("b8.")
        assert (p.grad is None) == frozen, name
    fc_before, fc_after = before["D.b4.fc.weight"], after["D.b4.fc.weight"]
    channels = D.b4.fc.in_features // 16
    masked = torch.arange(D.b4.fc.in_features) >= int(KEPT * channels) * 16
    assert torch.equal(fc_after[:, masked], fc_before[:, masked])  # masked weights: zero gradient, Adam leaves them
    assert not torch.equal(fc_after[:, ~masked], fc_before[:, ~masked])
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["Progress/toy"] for r in rows] == [1.0, 3.0, 4.0]  # ticks after iterations 1 (tick 0), 3 and 4

    # the snapshot rebuilds the wrapped networks with the method (passed here: tests are not a project package)
    nets = load_networks(tmp_path / "run", method=ToyMethod())
    z = torch.randn(4, 16)
    with torch.no_grad():
        expected = state.G_ema(z, None, noise_mode="const")
        assert torch.equal(nets.G_ema(z, None, noise_mode="const"), expected)
    assert nets.G_ema.synthesis.b8.conv1.inject.strength.item() == state.G_ema.synthesis.b8.conv1.inject.strength.item()
    record = load_checkpoint(next((tmp_path / "run").glob("snapshot-*.pt")))["extra"]["network"]
    assert record == {"resolution": 8, "img_channels": 1, "c_dim": 0, "method": "test_stylegan2_hooks:_Recording"}
    with pytest.raises(CheckpointError, match="not a method of this project's packages"):
        load_networks(tmp_path / "run")


def test_toy_method_resumes_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    straight = train(_cfg(), tmp_path / "straight", method=ToyMethod())
    train(_cfg(), tmp_path / "split", method=ToyMethod(), max_iterations=2)
    resumed = train(_cfg(), tmp_path / "split2", method=ToyMethod(), resume=tmp_path / "split")
    a, b = _states(straight), _states(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_update_ema_refuses_a_network_changed_after_its_copy():
    G, G_ema = _small_g(), _small_g()
    update_ema(G, G_ema, 0.5)
    G.mapping = torch.nn.Sequential(G.mapping)  # wrapped after the copy: names differ
    with pytest.raises(ValueError, match="EMA copy no longer matches its network"):
        update_ema(G, G_ema, 0.5)


def test_init_from_a_project_snapshot_copies_weights_and_starts_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    source = train(_cfg(), tmp_path / "source", method=Method())
    method = _Recording()
    cfg = _cfg(init_from=str(tmp_path / "source"), total_kimg=0.008)
    fine = train(cfg, tmp_path / "fine", method=method)
    for name in ("G", "D", "G_ema"):  # G's wrapper is new: its base holds the source weights
        for key, value in source.modules[name].state_dict().items():
            ours = key.replace("mapping.", "mapping.base.", 1) if name != "D" else key
            assert torch.equal(method.at_setup[f"{name}.{ours}"], value), (name, key)
    assert fine.batch_idx == 1 and fine.cur_nimg == 8  # fresh counters ...
    assert fine.optimizers["G"].state_dict()["state"][0]["step"].item() == 2  # ... fresh Adam: Gmain + Greg

    # resuming ignores init_from (the weights come from the run's own snapshot), even once the source is gone
    (tmp_path / "source").rename(tmp_path / "moved")
    resumed = train(_cfg(init_from=str(tmp_path / "source")), tmp_path / "fine2", method=_Recording(),
                    resume=tmp_path / "fine")
    assert resumed.batch_idx == 4
    with pytest.raises(CheckpointError, match="was trained by test_stylegan2_hooks:_Recording, this run is "
                       "toy_method:ToyMethod: --resume continues the same method"):
        train(_cfg(), tmp_path / "fine3", method=ToyMethod(), resume=tmp_path / "fine")


def test_init_from_an_official_pickle(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _cfg(total_kimg=0.008)
    resolved = resolve(cfg, 8, gpus=1)
    torch.manual_seed(5)
    G, D = build_generator(resolved, 8, 1, 0), build_discriminator(resolved, 8, 1, 0)
    g = resolved.G
    g_kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=8, img_channels=1,
                    mapping_kwargs={"num_layers": g.mapping_layers},
                    synthesis_kwargs={"channel_base": 128, "channel_max": 16, "num_fp16_res": 0, "conv_clamp": None})
    d = resolved.D
    d_kwargs = dict(c_dim=0, img_resolution=8, img_channels=1, architecture="resnet", channel_base=128,
                    channel_max=16, num_fp16_res=0, conv_clamp=None, block_kwargs={}, mapping_kwargs={},
                    epilogue_kwargs={"mbstd_group_size": d.mbstd_group_size})
    path = tmp_path / "network-snapshot-000100.pkl"
    write_official_pickle(path, dict(training_set_kwargs={}, G=G, D=D, G_ema=G, augment_pipe=None),
                          dict(G=g_kwargs, D=d_kwargs, G_ema=g_kwargs))
    for method, prefix in ((_RecordingPlain(), ""), (_Recording(), "base.")):  # plain, and inside the toy's wrapper
        train(replace_cfg(cfg, train={"init_from": str(path)}), tmp_path / type(method).__name__, method=method)
        for key, value in D.state_dict().items():
            assert torch.equal(method.at_setup[f"D.{key}"], value), key
        for key, value in G.mapping.state_dict().items():
            assert torch.equal(method.at_setup[f"G.mapping.{prefix}{key}"], value), key
            assert torch.equal(method.at_setup[f"G_ema.mapping.{prefix}{key}"], value), key


class _DefaultInit(ToyMethod):
    init_networks = Method.init_networks


def test_init_from_networks_that_do_not_fit_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    train(_cfg(), tmp_path / "source", method=Method(), max_iterations=1)
    wider = replace_cfg(_cfg(init_from=str(tmp_path / "source")), G={"channel_max": 32})
    with pytest.raises(CheckpointError, match="does not fit module 'G'.*\n  shape mismatches: synthesis"):
        train(wider, tmp_path / "wide", method=Method())
    assert not (tmp_path / "wide" / "stats.jsonl").exists()
    # a wrapping method that leaves the official --resume rule in place is told which keys do not match
    with pytest.raises(CheckpointError, match="missing keys: mapping.base.fc0.bias"):
        train(_cfg(init_from=str(tmp_path / "source")), tmp_path / "wrapped", method=_DefaultInit())


def test_resolve_method_accepts_project_methods_only():
    assert type(resolve_method("common.stylegan2.method:Method")) is Method
    with pytest.raises(CheckpointError, match="not a method of this project's packages"):
        resolve_method("os:system")
    with pytest.raises(CheckpointError, match="is not a common.stylegan2 Method"):
        resolve_method("common.stylegan2.method:Networks")
    with pytest.raises(CheckpointError, match="does not provide"):
        resolve_method("dynamicd.method:NoSuchMethod")
    assert type(resolve_method("dynamicd.method:DynamicD")).__name__ == "DynamicD"


@pytest.mark.slow
def test_toy_method_under_torchrun_trains_only_its_parameters(tmp_path):
    """2 gloo processes: ranks stay identical, and the frozen G base keeps rank 0's initial weights (each phase
    all-reduces only the parameters it trains)."""
    from ddp_gan_train import SMALL, launch, rank_states

    result = launch(tmp_path, "--toy", "--probe")  # the probe too runs on both ranks (proxy-FD gathers)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len((tmp_path / "run" / "probe.jsonl").read_text().splitlines()) == 2  # iterations 2 and 3 (the end)
    states = rank_states(tmp_path)
    cfg = resolve(replace_cfg(load_config(StyleGAN2Config, preset_path("tiny")), **SMALL), 8, gpus=2)
    torch.manual_seed(0)  # rank 0 builds the networks from seed * world + 0
    fresh = ToyMethod().build_networks(cfg, NetworkShape(8, 1, 0)).G.state_dict()
    for key, value in states["G"].items():
        frozen = not any(part in key for part in ("scale", "shift", "inject"))
        if frozen and not key.endswith("w_avg"):
            assert torch.equal(value, fresh[key]), key
    assert not torch.equal(states["G"]["mapping.scale"], fresh["mapping.scale"])
