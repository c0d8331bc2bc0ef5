"""The shared StyleGAN2-ADA loop: lazy-reg arithmetic, EMA formula, ADA step, R1/PL against hand computations,
and a tiny run that resumes bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from common.config import load_config
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.networks import Discriminator, Generator
from common.stylegan2.training import _phases, ema_beta, replace_cfg, train


def _tiny_cfg(**train_overrides) -> StyleGAN2Config:
    cfg = load_config(StyleGAN2Config, preset_path("tiny"))
    train_values = {
        "batch": 8,
        "batch_gpu": 8,
        "total_kimg": 0.16,
        "kimg_per_tick": 0.08,
        "snap_ticks": 1,
        **train_overrides,
    }
    return replace_cfg(
        cfg,
        data={"source": "digits", "resolution": 8},
        G={"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16},
        D={"channel_base": 128, "channel_max": 16, "mbstd_group_size": 4},
        loss={"r1_gamma": 1.0, "pl_weight": 2.0, "style_mixing_prob": 0.9},
        optim={"g_reg_interval": 4, "d_reg_interval": 4},
        augment={"mode": "ada", "p": 0.2, "kimg": 0.5, "interval": 4},
        train=train_values,
    )


def test_lazy_regularisation_rescales_adam():
    cfg = load_config(StyleGAN2Config, preset_path("stylegan2"))
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    phases = _phases(list(G.parameters()), list(D.parameters()), cfg)
    assert [(p.name, p.interval) for p in phases] == [("Gmain", 1), ("Greg", 4), ("Dmain", 1), ("Dreg", 16)]
    g_group, d_group = phases[0].opt.param_groups[0], phases[2].opt.param_groups[0]
    assert g_group["lr"] == pytest.approx(0.002 * 0.8) and g_group["betas"][1] == pytest.approx(0.99**0.8)
    assert d_group["lr"] == pytest.approx(0.002 * 16 / 17) and d_group["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert g_group["betas"][0] == 0 and g_group["eps"] == 1e-8


def test_ema_beta_formula():
    cfg = load_config(StyleGAN2Config, preset_path("cifar"))
    assert ema_beta(cfg, 64_000) == pytest.approx(0.5 ** (64 / 3200))  # = 0.98623, spec §11
    assert ema_beta(cfg, 64_000) == pytest.approx(0.98623, abs=1e-5)
    cfg = load_config(StyleGAN2Config, preset_path("paper256"))
    assert ema_beta(cfg, 10**6) == pytest.approx(0.5 ** (64 / 20_000))  # no rampup


def _micro_nets():
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs={"num_layers": 1},
        synthesis_kwargs={"channel_base": 64, "channel_max": 8},
    )
    D = Discriminator(
        c_dim=0,
        img_resolution=8,
        img_channels=1,
        channel_base=64,
        channel_max=8,
        epilogue_kwargs={"mbstd_group_size": 2},
    )
    return G.double(), D.double()


def test_r1_penalty_matches_finite_differences():
    _, D = _micro_nets()
    loss = StyleGAN2Loss(torch.nn.Identity(), D, r1_gamma=3.0)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    c = torch.zeros(2, 0, dtype=torch.float64)
    value = loss.d_reg(x, c)
    # finite-difference gradient of sum D(x) w.r.t. every pixel
    grad = torch.zeros_like(x)
    eps = 1e-6
    with torch.no_grad():
        for idx in range(x.numel()):
            delta = torch.zeros(x.numel(), dtype=torch.float64)
            delta[idx] = eps
            delta = delta.view_as(x)
            grad.view(-1)[idx] = (D(x + delta, c).sum() - D(x - delta, c).sum()) / (2 * eps)
    expected = (3.0 / 2) * grad.square().sum(dim=[1, 2, 3]).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_path_length_penalty_matches_hand_computation():
    G, _ = _micro_nets()
    loss = StyleGAN2Loss(G, torch.nn.Identity(), style_mixing_prob=0.0, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.01)
    loss.pl_mean = torch.tensor(0.5, dtype=torch.float64)
    z = torch.randn(4, 8, dtype=torch.float64)
    c = torch.zeros(4, 0, dtype=torch.float64)
    torch.manual_seed(1)
    value = loss.g_reg(z, c)
    # by hand: same noise (same RNG), J^T y per sample through autograd on ws of the first half batch
    torch.manual_seed(1)
    ws = G.mapping(z[:2], c[:2]).detach().requires_grad_(True)
    img = G.synthesis(ws)
    y = torch.randn_like(img) / math.sqrt(8 * 8)
    (g,) = torch.autograd.grad((img * y).sum(), ws)
    lengths = g.square().sum(2).mean(1).sqrt()
    a = 0.5 + 0.01 * (lengths.mean() - 0.5)
    assert value.item() == pytest.approx(((lengths - a).square() * 2.0).mean().item(), rel=1e-9)
    assert loss.pl_mean.item() == pytest.approx(a.item(), rel=1e-12)


def _weights(state) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("G", "D", "G_ema"):
        out.update({f"{name}.{k}": v.clone() for k, v in state.modules[name].state_dict().items()})
    return out


def test_tiny_run_then_resume_is_bitwise_identical(tmp_path, monkeypatch):
    """20 iterations with R1, PL, style mixing and ADA: 10 + resume + 10 == 20 straight."""
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _tiny_cfg()
    straight = train(cfg, tmp_path / "straight", device="cpu")
    assert straight.batch_idx == 20
    first = train(cfg, tmp_path / "split", device="cpu", max_iterations=10)
    assert first.batch_idx == 10
    resumed = train(cfg, tmp_path / "split2", device="cpu", resume=tmp_path / "split")
    assert resumed.batch_idx == 20
    assert float(resumed.augment_pipe.p) == float(straight.augment_pipe.p)
    assert float(straight.augment_pipe.p) != 0.2  # ADA moved p
    a, b = _weights(straight), _weights(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "straight" / "stats.jsonl").exists()
    assert any((tmp_path / "straight").glob("fakes*.png"))


def test_resume_in_place_after_a_crash_keeps_the_tick_schedule_and_the_records(tmp_path, monkeypatch):
    """Ticks of 3 iterations (0.02 kimg at batch 8), snapshots every 2nd tick: a run resumed in place from its
    iteration-13 snapshot, after a crash that had logged one more tick, writes the same snapshots and stats rows as
    the uninterrupted run (the image count // tick size would say tick 5 instead of 4); resuming the finished run
    trains nothing and writes nothing."""
    import json
    import shutil

    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _tiny_cfg(kimg_per_tick=0.02, snap_ticks=2)
    straight = train(cfg, tmp_path / "straight", device="cpu")

    def steps(run):
        return [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]

    def snapshots(run):
        return sorted(p.name for p in run.glob("snapshot-*.pt"))

    assert steps(tmp_path / "straight") == [8 * i for i in (1, 4, 7, 10, 13, 16, 19, 20)]
    run = tmp_path / "run"
    train(cfg, run, device="cpu", max_iterations=13)
    with open(run / "stats.jsonl", "a") as f:  # the crashed run got one tick further before it died
        f.write(json.dumps({"step": 128, "time": 0.0}) + "\n")
    shutil.copy(run / "snapshot-000000013.pt", tmp_path / "keep.pt")
    resumed = train(cfg, run, device="cpu", resume=run)
    assert steps(run) == steps(tmp_path / "straight") and snapshots(run)[-3:] == snapshots(tmp_path / "straight")[-3:]
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    before = (run / "stats.jsonl").read_text(), snapshots(run)
    again = train(cfg, run, device="cpu", resume=run)
    assert again.batch_idx == 20 and ((run / "stats.jsonl").read_text(), snapshots(run)) == before


def test_bad_settings_are_config_errors():
    from common.config import ConfigError
    from common.stylegan2.config import resolve
    from common.stylegan2.training import load_dataset

    cfg = load_config(StyleGAN2Config, preset_path("tiny"))
    with pytest.raises(ConfigError, match="train.batch_gpu 5 does not divide the 32 images per process .*one of "
                       "1, 2, 4, 8, 16, 32"):
        resolve(replace_cfg(cfg, train={"batch_gpu": 5}), 16, gpus=1)
    with pytest.raises(ConfigError, match="train.batch 32 does not split over 3 processes: set train.batch to a "
                       r"multiple of 3 \(e.g. 30 or 33\)"):
        resolve(cfg, 16, gpus=3)  # the advice works: 33 / 3 = 11 images per process
    assert resolve(replace_cfg(cfg, train={"batch": 33}), 16, gpus=3).train.batch_gpu == 11
    assert resolve(cfg, 16, gpus=2).train.batch_gpu == 16  # tiny leaves batch_gpu to batch // gpus
    with pytest.raises(ConfigError, match="data.path is not set"):
        load_dataset(load_config(StyleGAN2Config, preset_path("paper256")))



@pytest.mark.slow
def test_ddp_ranks_stay_identical(tmp_path):
    """torchrun, 2 processes x 2 accumulation rounds, R1/PL every 2nd iteration: G, D, G_ema identical on both ranks
    after 3 iterations (each rank built its networks from a different seed, so this needs the broadcast and the
    gradient averaging), and training moved them."""
    from ddp_gan_train import launch, rank_states

    result = launch(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    states = rank_states(tmp_path)
    assert set(states) == {"G", "D", "G_ema", "augment_pipe"}
    torch.manual_seed(0)
    fresh = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=1,
                      mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    moved = states["G"]["synthesis.b8.conv1.weight"] - fresh.state_dict()["synthesis.b8.conv1.weight"]
    assert moved.abs().max() > 0


def test_metrics_do_not_change_what_is_trained(tmp_path, monkeypatch):
    """Building the proxy extractor and evaluating it at every snapshot leave the training RNG where it was."""
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    runs = [train(_tiny_cfg(metrics=metrics, total_kimg=0.024), tmp_path / name, device="cpu")
            for name, metrics in (("plain", ["none"]), ("measured", ["proxy_fd"]))]
    a, b = (_weights(state) for state in runs)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert "Metrics/proxy_fd" in (tmp_path / "measured" / "stats.jsonl").read_text()


@pytest.mark.parametrize("override, key", [
    ("train.total_kimg=-1", "train.total_kimg"), ("train.total_kimg=nan", "train.total_kimg"),
    ("train.kimg_per_tick=0", "train.kimg_per_tick"), ("train.batch=0", "train.batch"),
    ("train.snap_ticks=0", "train.snap_ticks"), ("train.ema_kimg=-1", "train.ema_kimg"),
    ("optim.g_lr=0", "optim.g_lr"), ("optim.d_lr=inf", "optim.d_lr"), ("optim.betas=[0,1]", "optim.betas"),
    ("optim.d_reg_interval=-1", "optim.d_reg_interval"), ("loss.r1_gamma=-0.1", "loss.r1_gamma"),
    ("loss.style_mixing_prob=1.5", "loss.style_mixing_prob"),
])
def test_numbers_out_of_range_are_one_config_line(override, key):
    from common.config import ConfigError, load_config
    from common.stylegan2.config import StyleGAN2Config, preset_path

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(StyleGAN2Config, preset_path("tiny"), [override])
    load_config(StyleGAN2Config, preset_path("tiny"), ["train.ema_kimg=0", "optim.g_reg_interval=0"])  # in range
