"""Sampling: a trained tiny model gives finite samples in [-1, 1] with NFE = k; the npz contract (spec §9.9); the
official folder order; the sample CLI with an npz prior, --edit, and one-line errors; the VAE prior's σ²."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from common.config import load_config
from common.data import DatasetError
from es_ddpm.config import ESDDPMConfig, build_diffusion, build_unet, config_path
from es_ddpm.data import load_folder_samples, load_npz_samples, save_npz_samples
from es_ddpm.diffusion import linear_betas
from es_ddpm.gan import load_gan, train_gan
from es_ddpm.sample import es_sample, load_ddpm, merge_rank_samples
from es_ddpm.sample import main as sample_main
from es_ddpm.train import train_ddpm
from es_ddpm.vae import decoder_variance, load_vae, train_vae


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddpm")
    cfg = load_config(ESDDPMConfig, config_path("tiny"))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch=32, iterations=30, warmup_steps=5),
                              vae=dataclasses.replace(cfg.vae, iterations=40, batch=32))
    train_ddpm(cfg, run / "ddpm")
    train_vae(cfg, run / "vae")
    return cfg, run


def test_trained_model_samples_are_finite_and_in_range(trained):
    cfg, run = trained
    model = load_ddpm(run / "ddpm", cfg)
    diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma, "100")
    x_prior = load_vae(run / "vae", cfg).sample(6, torch.Generator().manual_seed(0))
    raw = diffusion.sample_early_stop(model, x_prior, 20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(raw).all() and raw.abs().max() <= 1.0
    result = es_sample(model, diffusion, x_prior, 200, "ddim", batch=4, generator=torch.Generator().manual_seed(0))
    assert result.nfe == 20 and result.images.dtype == torch.uint8 and result.images.shape == (6, 1, 16, 16)
    assert result.stats["effective_t_prime"] == 193


def test_npz_contract_round_trip(tmp_path):
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5])
    path = save_npz_samples(tmp_path / "g.npz", images, labels)
    with np.load(path) as data:
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (5, 8, 8, 3)
    x, y = load_npz_samples(path, need_labels=True)
    assert x.dtype == torch.float32 and x.shape == (5, 3, 8, 8)
    assert torch.equal(x, images.float() / 255 * 2 - 1) and torch.equal(y, labels)
    np.savez(tmp_path / "nolabels.npz", images.permute(0, 2, 3, 1).numpy())
    with pytest.raises(DatasetError, match="no 'arr_1' labels but the model is class-conditional"):
        load_npz_samples(tmp_path / "nolabels.npz", need_labels=True)
    np.savez(tmp_path / "float.npz", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(DatasetError, match="arr_0 must be uint8"):
        load_npz_samples(tmp_path / "float.npz")


def test_folder_prior_uses_the_official_order(tmp_path):
    for name, value in (("10_label_3.png", 30), ("2_label_1.png", 20), ("1_label_0.png", 10)):
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / name)
    x = load_folder_samples(tmp_path, channels=3)
    assert x.shape == (3, 3, 4, 4)
    assert [round((v + 1) / 2 * 255) for v in x[:, 0, 0, 0].tolist()] == [10, 20, 30]


def test_sample_cli_npz_prior_edit_and_errors(trained, tmp_path):
    cfg, run = trained
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    save_npz_samples(tmp_path / "prior.npz", images)
    runner = CliRunner()
    args = ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--outdir", str(tmp_path / "out")]
    result = runner.invoke(sample_main, [*args, "--prior", "npz", "--prior-path", str(tmp_path / "prior.npz"),
                                         "--early-stop", "100", "--chain", "250"])
    assert result.exit_code == 0, result.output
    assert "NFE 25" in result.output and "effective_t_prime 97" in result.output
    with np.load(next((tmp_path / "out").glob("*/samples.npz"))) as data:
        assert data["arr_0"].shape == (3, 16, 16, 1) and data["arr_0"].dtype == np.uint8
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "edit.png")
    result = runner.invoke(sample_main, [*args, "--edit", str(tmp_path / "edit.png"), "--num", "2", "--png",
                                         "--early-stop", "50", "--chain", "100"])
    assert result.exit_code == 0 and "NFE 5" in result.output, result.output
    bad = runner.invoke(sample_main, [*args, "--prior", "npz", "--prior-path", str(tmp_path / "missing.npz")])
    assert bad.exit_code == 1 and "no npz of generator samples" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(sample_main, [*args, "--prior", "npz", "--prior-path", str(tmp_path / "prior.npz"),
                                      "--chain", "ddim999"])
    assert bad.exit_code == 1 and "no integer stride gives exactly 999" in bad.output
    assert len(list((tmp_path / "out").iterdir())) == 2  # the failed starts left no run dir behind


def test_vae_decoder_variance_follows_the_es_bound():
    abar = np.cumprod(1 - linear_betas(1000))
    cfg = load_config(ESDDPMConfig).vae
    assert decoder_variance(dataclasses.replace(cfg, t_prime=100), abar) == pytest.approx(0.1148, abs=5e-4)
    assert decoder_variance(dataclasses.replace(cfg, t_prime=200), abar) == pytest.approx(0.5174, abs=5e-4)
    assert decoder_variance(dataclasses.replace(cfg, decoder_variance=1.0), abar) == 1.0


def test_dcgan_prior_trains_and_feeds_the_sampler(trained, tmp_path):
    cfg, run = trained
    cfg = dataclasses.replace(cfg, gan=dataclasses.replace(cfg.gan, iterations=5, batch=8))
    stats = train_gan(cfg, tmp_path / "gan")
    assert set(stats) == {"loss_d", "loss_g"} and all(np.isfinite(list(stats.values())))
    x = load_gan(tmp_path / "gan", cfg).sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 16, 16) and x.abs().max() <= 1.0
    result = CliRunner().invoke(sample_main, ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--prior", "dcgan",
                                              "--prior-path", str(tmp_path / "gan"), "--num", "3", "--early-stop",
                                              "100", "--chain", "100", "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 0 and "3 samples, NFE 10" in result.output, result.output


_SMALL_ADM = ["model.image_size=16", "model.num_channels=16", "model.num_res_blocks=1", "model.channel_mult=1,2",
              "model.attention_resolutions=8", "model.num_heads=1", "model.num_head_channels=-1",
              "model.norm_groups=8", "model.precision=fp32", "model.dropout=0.0"]


def _small_official_checkpoint(cfg_name: str, path, overrides: list[str]) -> None:
    """A guided-diffusion-format state dict (plain ``torch.save(model.state_dict())``) of the row's UNet, shrunk."""
    cfg = load_config(ESDDPMConfig, config_path(cfg_name), overrides)
    torch.manual_seed(0)
    torch.save(build_unet(cfg.model).state_dict(), path)


def test_imagenet64_scratch_row_draws_uniform_random_classes(tmp_path):
    """The class-conditional baseline from noise (official --start_from_scratch: th.randint(0, NUM_CLASSES))."""
    sets = [x for o in _SMALL_ADM for x in ("--set", o)]
    _small_official_checkpoint("imagenet64_scratch250", tmp_path / "adm.pt", _SMALL_ADM)
    outputs = []
    for run in ("a", "b"):
        result = CliRunner().invoke(sample_main, ["--cfg", "imagenet64_scratch250", *sets, "--ckpt",
                                                  str(tmp_path / "adm.pt"), "--num", "6", "--chain", "25",
                                                  "--outdir", str(tmp_path / run)])
        assert result.exit_code == 0, result.output
        assert "6 samples, NFE 25 (from scratch)" in result.output
        with np.load(next((tmp_path / run).glob("*/samples.npz"))) as data:
            outputs.append((data["arr_0"], data["arr_1"]))
    (images, labels), (images_b, labels_b) = outputs
    assert images.shape == (6, 16, 16, 3) and labels.shape == (6,) and 0 <= labels.min() and labels.max() < 1000
    assert len(set(labels.tolist())) > 1  # random classes, not class 0
    assert np.array_equal(images, images_b) and np.array_equal(labels, labels_b)  # seeded


def test_prior_labels_unconditional_warning_and_range_check(trained, tmp_path):
    cfg, run = trained
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    save_npz_samples(tmp_path / "labelled.npz", images, torch.tensor([1, 2, 3]))
    result = CliRunner().invoke(sample_main, ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--prior", "npz",
                                              "--prior-path", str(tmp_path / "labelled.npz"), "--early-stop", "50",
                                              "--chain", "100", "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "holds labels (arr_1) but the model is unconditional; they are ignored" in result.stderr
    with np.load(next((tmp_path / "out").glob("*/samples.npz"))) as data:
        assert data.files == ["arr_0"] and data["arr_0"].shape == (3, 16, 16, 1)
    sets = [x for o in _SMALL_ADM for x in ("--set", o)]
    _small_official_checkpoint("imagenet64", tmp_path / "adm.pt", _SMALL_ADM)
    save_npz_samples(tmp_path / "rgb.npz", torch.zeros((2, 3, 16, 16), dtype=torch.uint8), torch.tensor([5, 1000]))
    bad = CliRunner().invoke(sample_main, ["--cfg", "imagenet64", *sets, "--ckpt", str(tmp_path / "adm.pt"),
                                           "--prior-path", str(tmp_path / "rgb.npz"), "--outdir", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "labels (arr_1) must lie in 0..999, found 5..1000" in bad.output
    assert "Traceback" not in bad.output


def test_lsun_cat_rows_and_every_config_build_their_chain():
    for name in sorted(p.stem for p in config_path("tiny").parent.glob("*.yaml")):
        cfg = load_config(ESDDPMConfig, config_path(name))
        diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma, cfg.sample.chain)
        if cfg.sample.t_prime is not None and cfg.sample.prior.type != "noise":
            assert diffusion.steps_below(cfg.sample.t_prime) >= 1, name
    cat = load_config(ESDDPMConfig, config_path("lsun_cat_ddim200"))
    assert (cat.sample.checkpoint, cat.sample.chain, cat.sample.sampler, cat.sample.t_prime) == (
        "lsun_cat.pt", "ddim200", "ddim", 100)
    assert build_diffusion(cat.diffusion, True, cat.sample.chain).steps_below(100) == 20
    scratch = load_config(ESDDPMConfig, config_path("lsun_cat_scratch1000"))
    assert (scratch.sample.checkpoint, scratch.sample.prior.type, scratch.sample.t_prime) == ("lsun_cat.pt", "noise",
                                                                                            None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_write_one_merged_samples_npz(trained, tmp_path):
    """torchrun, 2 gloo ranks: contiguous ceil(N/2) shares, one samples.npz of exactly N (labels kept), per-rank
    files removed (official gather step); rank 0's share equals a single process's first share (same seed)."""
    cfg, run = trained
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    save_npz_samples(tmp_path / "prior.npz", images)
    args = ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--prior", "npz", "--prior-path", str(tmp_path / "prior.npz"),
            "--early-stop", "50", "--chain", "100", "--set", "sample.batch=3", "--png"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", "-m", "es_ddpm.sample", *args, "--outdir", str(tmp_path / "ddp")]
    env = {**os.environ, "GENFORCE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "ddp").glob("*-tiny"))
    assert not list(run_dir.glob("samples_rank*.npz"))
    assert sorted(p.name for p in run_dir.glob("0*.png")) == [f"{i:06d}.png" for i in range(5)]
    single = CliRunner().invoke(sample_main, [*args, "--outdir", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    with np.load(run_dir / "samples.npz") as merged, np.load(next((tmp_path / "one").glob("*/samples.npz"))) as one:
        assert merged["arr_0"].shape == (5, 16, 16, 1)
        assert np.array_equal(merged["arr_0"][:3], one["arr_0"][:3])


def test_merge_truncates_to_the_requested_number_and_keeps_labels(tmp_path):
    for rank, count in enumerate((4, 4, 3)):
        save_npz_samples(tmp_path / f"samples_rank{rank}.npz", torch.full((count, 3, 2, 2), rank, dtype=torch.uint8),
                         torch.arange(count) + 10 * rank)
    merge_rank_samples(tmp_path, 3, 10)
    with np.load(tmp_path / "samples.npz") as data:
        assert data["arr_0"].shape == (10, 2, 2, 3)
        assert data["arr_0"][:, 0, 0, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 2
        assert data["arr_1"].tolist() == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz"]


def test_the_dcgan_prior_trains_from_the_cli_and_feeds_the_sampler(trained, tmp_path):
    from es_ddpm.train import main as train_main

    cfg, run = trained
    runner = CliRunner()
    result = runner.invoke(train_main, ["--cfg", "tiny", "--what", "dcgan", "--set", "gan.iterations=2",
                                        "--outdir", str(tmp_path / "gan")])
    assert result.exit_code == 0, result.output
    gan_run = next((tmp_path / "gan").iterdir())
    assert [p.name for p in gan_run.glob("gan-*.pt")] == ["gan-000000002.pt"]
    bad = runner.invoke(train_main, ["--what", "dcgan", "--resume", str(gan_run)])
    assert bad.exit_code == 2 and "trains in one go" in bad.output
    result = runner.invoke(sample_main, ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--outdir",
                                         str(tmp_path / "out"), "--prior", "dcgan", "--prior-path", str(gan_run),
                                         "--num", "2", "--early-stop", "50", "--chain", "100"])
    assert result.exit_code == 0, result.output
