"""GH-Feat's loop (official training_loop_ghfeat.py; spec ghfeat.md §2.2, §9.8): one E step then one D step on the
same batch, G frozen, the flags' meaning, exact resume, and reconstruction improving on images of known styles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from common.checkpoint import load_checkpoint, resolve_resume
from common.config import load_config
from common.data.archive import write_image_archive
from common.stylegan2.networks import Discriminator
from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from common.stylegan2.snapshot import load_networks
from ghfeat import train as train_cli
from ghfeat.config import GHFeatConfig, config_path
from ghfeat.training import fresh_discriminator, load_encoder, random_mirror, reconstruct, train_ghfeat

TINY = ["data.num_images=64", "train.batch=4", "data.workers=0"]


@pytest.fixture(scope="module")
def source() -> str:
    torch.set_num_threads(1)
    return str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))


def _cfg(source: str, *extra: str) -> GHFeatConfig:
    return load_config(GHFeatConfig, config_path("tiny"), [f"generator.path={source}", *TINY, *extra])


def test_fresh_D_equals_a_newly_constructed_D():
    kwargs = dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=1024, channel_max=64)
    torch.manual_seed(5)
    trained = Discriminator(**kwargs)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # "pretrained"
    torch.manual_seed(7)
    expected = Discriminator(**kwargs)
    fresh = fresh_discriminator(trained, seed=7)
    for (name, a), b in zip(fresh.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), name


def test_one_E_step_and_one_D_step_per_iteration_and_G_never_changes(source, tmp_path):
    G0 = load_networks(source).G_ema
    train_ghfeat(_cfg(source, "train.total_kimg=0.012"), tmp_path)  # 3 iterations of 4
    ckpt = load_checkpoint(resolve_resume(tmp_path))
    assert ckpt["step"] == 3
    for opt in ("opt_E", "opt_D"):
        steps = {float(s["step"]) for s in ckpt["optimizers"][opt]["state"].values()}
        assert steps == {3.0}, opt  # every parameter of E and of D: one Adam step per iteration
    assert "G" not in ckpt["modules"] and "G_ema" not in ckpt["modules"]
    E, G, _ = load_encoder(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G0.state_dict().values()))
    D0 = load_networks(source).D.state_dict()
    assert any(not torch.equal(ckpt["modules"]["D"][k], D0[k]) for k in D0)  # D was fine-tuned from the source's


def test_without_the_adversarial_term_D_is_not_trained(source, tmp_path):
    train_ghfeat(_cfg(source, "train.total_kimg=0.008", "loss.d_scale=0"), tmp_path)
    ckpt = load_checkpoint(resolve_resume(tmp_path))
    D0 = load_networks(source).D.state_dict()
    assert all(torch.equal(ckpt["modules"]["D"][k], D0[k]) for k in D0)
    assert ckpt["optimizers"]["opt_D"]["state"] == {}


def test_fresh_D_is_what_training_starts_from_when_pretrained_D_is_off(source, tmp_path):
    cfg = _cfg(source, "train.total_kimg=0.004", "train.pretrained_D=false", "optim.d_lr=1e-12")
    train_ghfeat(cfg, tmp_path)
    saved = load_checkpoint(resolve_resume(tmp_path))["modules"]["D"]
    fresh = fresh_discriminator(load_networks(source).D, cfg.seed).state_dict()
    assert all(torch.allclose(saved[k], fresh[k], atol=1e-6) for k in fresh)  # one step at lr 1e-12


def test_resume_equals_an_uninterrupted_run(source, tmp_path):
    cfg = _cfg(source, "train.total_kimg=0.016", "train.snapshot_kimg=0.008")  # 4 iterations, snapshot at 2
    train_ghfeat(cfg, tmp_path / "full")
    train_ghfeat(cfg, tmp_path / "cut", max_iterations=2)
    train_ghfeat(cfg, tmp_path / "cut", resume=tmp_path / "cut")
    a, b = (load_checkpoint(resolve_resume(tmp_path / name)) for name in ("full", "cut"))
    assert a["step"] == b["step"] == 4
    for module in ("E", "D"):
        for key, value in a["modules"][module].items():
            assert torch.equal(value, b["modules"][module][key]), (module, key)
    for opt in ("opt_E", "opt_D"):
        for idx, state in a["optimizers"][opt]["state"].items():
            assert torch.equal(state["exp_avg"], b["optimizers"][opt]["state"][idx]["exp_avg"])


def test_reconstruction_of_images_made_from_known_styles_improves(source, tmp_path):
    G = load_networks(source).G_ema
    torch.manual_seed(0)
    with torch.no_grad():
        images = G(torch.randn(64, G.z_dim), torch.zeros(64, 0), noise_mode="const")
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    data = tmp_path / "known.zip"
    write_image_archive(data, pixels.permute(0, 2, 3, 1).numpy())
    cfg = _cfg(source, "data.source=path", f"data.path={data}", "train.batch=8", "train.total_kimg=0.32",
               "loss.d_scale=0", "data.mirror=false")
    E0 = None
    train_ghfeat(cfg, tmp_path / "run", max_iterations=1)
    E0, G, _ = load_encoder(tmp_path / "run")
    with torch.no_grad():
        before = (reconstruct(E0, G, images) - images).square().mean().item()
    train_ghfeat(cfg, tmp_path / "run", resume=tmp_path / "run", max_iterations=39)
    E, G, _ = load_encoder(tmp_path / "run")
    with torch.no_grad():
        after = (reconstruct(E, G, images) - images).square().mean().item()
    assert after < 0.7 * before, (before, after)


def test_random_mirror_flips_about_half_from_the_torch_rng():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1000, 1, 1, 4)
    torch.manual_seed(0)
    y = random_mirror(x)
    flipped = (y[:, 0, 0, 0] == 3).float().mean().item()
    assert 0.45 < flipped < 0.55 and torch.equal(y[y[:, 0, 0, 0] == 3], x.flip(3)[: int(flipped * 1000)])
    torch.manual_seed(0)
    assert torch.equal(random_mirror(x), y)


def test_cli_flags_read_as_what_they_do_and_the_official_spellings_are_refused(source, tmp_path):
    runner = CliRunner()
    args = ["--cfg", "tiny", "--generator", source, "--outdir", str(tmp_path), *sum((["--set", s] for s in TINY), []),
            "--set", "train.total_kimg=0.004", "--no-mirror", "--fresh-D", "--d-scale", "0.1"]
    result = runner.invoke(train_cli.main, args)
    assert result.exit_code == 0, result.output
    cfg = load_config(GHFeatConfig, next(tmp_path.glob("*/config.yaml")))
    assert (cfg.data.mirror, cfg.train.pretrained_D, cfg.loss.d_scale) == (False, False, 0.1)
    for flag, use in (("--mirror_augment", "--no-mirror"), ("--pretrained_D", "--fresh-D")):
        result = runner.invoke(train_cli.main, ["--generator", source, "--outdir", str(tmp_path / "x"), flag])
        assert result.exit_code == 2 and use in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, needle", [
    (["--generator", "missing.pkl"], "does not exist"),
    (["--data", "missing.zip", "--generator", "SOURCE"], "data.path 'missing.zip' does not exist"),
    (["--generator", "SOURCE", "--set", "train.batch=1"], "BatchNorm needs 2"),
    (["--generator", "SOURCE", "--set", "encoder.depth=7", "--set", "encoder.filters=null"], "depth must be one of"),
    (["--generator", "SOURCE", "--set", "loss.d_levels=[b64]"], "loss.d_levels"),
])
def test_bad_input_is_one_line_and_leaves_no_run_dir(source, tmp_path, args, needle):
    args = [source if a == "SOURCE" else a for a in args]
    result = CliRunner().invoke(train_cli.main, ["--outdir", str(tmp_path / "runs"), *args])
    assert result.exit_code != 0 and needle in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_mirror_default_is_on_and_pretrained_D_on():
    cfg = load_config(GHFeatConfig)
    assert cfg.data.mirror and cfg.train.pretrained_D and np.isclose(cfg.loss.d_scale, 0.08)


def test_bench_times_a_tiny_iteration():
    from ghfeat.bench import iteration_seconds

    assert 0 < iteration_seconds("tiny", batch=4, reps=1, device=torch.device("cpu")) < 60
