"""VolumeGAN on the shared loop: the official rows and optimiser values, style mixing among the texture codes only,
the progressive schedule with its optimiser resets, an exact resume across a fade, and one-line config errors."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from common.config import ConfigError, load_config
from common.stylegan2.config import resolve
from common.stylegan2.method import NetworkShape
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import ema_beta, lazy_adam, replace_cfg, train
from volumegan.config import VolumeGANConfig, config_names, config_path
from volumegan.method import VolumeGAN, VolumeGANLoss, build_volumegan_generator
from volumegan.train import main as train_main


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny(*overrides: str, **sections) -> VolumeGANConfig:
    cfg = load_config(VolumeGANConfig, config_path("tiny"), ["data.source=shapes", "data.num_images=64", *overrides])
    return replace_cfg(cfg, **sections)


def test_rows_load_with_the_official_values():
    assert {"ffhq256", "celeba128", "cats128", "carla128", "compcars256", "lsun_bedroom256", "tiny"} <= \
        set(config_names())
    for name in config_names():
        load_config(VolumeGANConfig, config_path(name))
    cfg = resolve(load_config(VolumeGANConfig, config_path("ffhq256")), 256)
    assert (cfg.train.batch, cfg.loss.r1_gamma, cfg.loss.pl_weight, cfg.train.ema_kimg) == (64, 10, 2, 20)
    assert cfg.data.mirror and cfg.augment.mode == "noaug" and cfg.volumegan.progressive
    d_opt = lazy_adam([torch.zeros(1, requires_grad=True)], cfg.optim.d_lr, cfg.optim.betas, 1e-8, 16)
    g_opt = lazy_adam([torch.zeros(1, requires_grad=True)], cfg.optim.g_lr, cfg.optim.betas, 1e-8, 4)
    assert d_opt.defaults["lr"] == pytest.approx(0.00188235, rel=1e-5)
    assert d_opt.defaults["betas"][1] == pytest.approx(0.990585, rel=1e-6)
    assert g_opt.defaults["lr"] == pytest.approx(0.0016) and g_opt.defaults["betas"][1] == pytest.approx(0.991992,
                                                                                                        rel=1e-6)
    assert ema_beta(cfg, 10**6) == pytest.approx(0.997784, abs=1e-6)  # minibatch 64, 20k images
    nets = VolumeGAN().build_networks(cfg, NetworkShape(256, 3, 0))
    assert _count(nets.G) == 8_688_271 and _count(nets.D) == 28_875_393
    carla = load_config(VolumeGANConfig, config_path("carla128")).volumegan
    assert (carla.fov, carla.num_steps, carla.camera, carla.ray_start) == (30, 36, "uniform", 0.7)


def test_style_mixing_replaces_texture_codes_only():
    cfg = resolve(_tiny(), 32)
    G = build_volumegan_generator(cfg, 32, 3)
    loss = VolumeGANLoss(G, None, structure_ws=2, style_mixing_prob=1.0)
    z = torch.randn(4, 64)
    plain = G.mapping(z, None, skip_w_avg_update=True)
    cutoffs = set()
    torch.manual_seed(0)
    for _ in range(20):
        _, ws = loss.run_G(z, None, noise_mode="const")
        assert torch.equal(ws[:, :2], plain[:, :2])  # the structure codes always come from the first z
        changed = [i for i in range(G.num_ws) if not torch.equal(ws[:, i], plain[:, i])]
        cutoffs.add(min(changed))
        assert changed == list(range(min(changed), G.num_ws))
    assert cutoffs == {2, 3, 4, 5}  # cutoff ~ U{L .. num_ws - 1}


def _state(cfg, batch_idx, cur_nimg):
    cfg = resolve(cfg, 32)
    G = build_volumegan_generator(cfg, 32, 3)
    nets = VolumeGAN().build_networks(cfg, NetworkShape(32, 3, 0))
    opts = {"G": torch.optim.Adam(G.parameters()), "D": torch.optim.Adam(nets.D.parameters())}
    return SimpleNamespace(cfg=cfg, G=G, G_ema=build_volumegan_generator(cfg, 32, 3), D=nets.D, optimizers=opts,
                           batch_idx=batch_idx, cur_nimg=cur_nimg)


def test_lod_follows_the_image_count_every_interval_and_resets_adam_at_fade_edges():
    method = VolumeGAN()
    state = _state(_tiny(), 0, 0)
    for opt in state.optimizers.values():  # a non-empty Adam state to see the resets
        opt.state[next(iter(opt.param_groups[0]["params"]))] = {"step": torch.tensor(1.0)}
    seen = []
    for batch_idx, nimg in ((0, 0), (4, 1000), (5, 2800), (8, 2800), (12, 3200), (16, 4000), (20, 9000)):
        state.batch_idx, state.cur_nimg = batch_idx, nimg
        had_state = len(state.optimizers["G"].state) > 0
        method.before_iteration(state)
        seen.append((float(state.D.lod), had_state and not state.optimizers["G"].state))
        assert float(state.G.synthesis.renderer.lod) == float(state.G_ema.synthesis.renderer.lod) == seen[-1][0]
        state.optimizers["G"].state[next(iter(state.G.parameters()))] = {"step": torch.tensor(1.0)}
    # 2 kimg at lod 1, then a 2 kimg fade; iteration 5 is not a multiple of 4: no update
    assert [s[0] for s in seen] == [1.0, 1.0, 1.0, pytest.approx(0.6), pytest.approx(0.4), 0.0, 0.0]
    # resets when floor or ceil of the lod change: 0 -> 1 (the first), 1 -> 0.6 (fade starts), 0.4 -> 0 (fade ends)
    assert [s[1] for s in seen] == [True, False, False, True, False, True, False]
    off = _state(_tiny("volumegan.progressive=false"), 0, 10**6)
    method.before_iteration(off)
    assert float(off.D.lod) == 0.0


def test_resume_across_a_fade_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    torch.set_num_threads(1)
    cfg = _tiny("volumegan.lod_training_kimg=0.016", "volumegan.lod_transition_kimg=0.032",
                "volumegan.lod_interval=2", train={"total_kimg": 0.064, "kimg_per_tick": 0.032, "snap_ticks": 1})
    straight = train(cfg, tmp_path / "straight", method=VolumeGAN())
    assert straight.batch_idx == 8 and float(straight.D.lod) == 0.0
    train(cfg, tmp_path / "split", method=VolumeGAN(), max_iterations=3)  # stops inside the fade
    resumed = train(cfg, tmp_path / "split2", method=VolumeGAN(), resume=tmp_path / "split")
    for name in ("G", "D", "G_ema"):
        a, b = straight.modules[name].state_dict(), resumed.modules[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    nets = load_networks(tmp_path / "straight")
    assert float(nets.G_ema.synthesis.renderer.lod) == 0.0 and nets.G_ema.num_ws == 6


@pytest.mark.parametrize("sets,message", [
    (["volumegan.nerf_res=24"], "nerf_res .24. must be the image resolution divided by a power of two"),
    (["volumegan.feature_dim=16"], "feature_dim .16. must equal the renderer's input width"),
    (["volumegan.bounds=[[1, 0, 0], [0, 1, 1]]"], "volumegan.bounds is"),
    (["volumegan.num_steps=2"], "num_steps must be >= 3"),
])
def test_bad_configs_are_one_line(tmp_path, sets, message):
    result = CliRunner().invoke(train_main, ["--cfg", "tiny", "--set", "data.source=shapes", "--set",
                                             "data.num_images=16", "--outdir", str(tmp_path / "runs"),
                                             *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and re.search(message, errors[0]), result.output
    assert not (tmp_path / "runs").exists()


def test_conditional_data_is_refused():
    cfg = resolve(_tiny(), 32)
    with pytest.raises(ConfigError, match="unconditional"):
        VolumeGAN().build_networks(cfg, NetworkShape(32, 3, 10))
    assert math.isclose(cfg.volumegan.pitch_mean, math.pi / 2 - 0.125)
