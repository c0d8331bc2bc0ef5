"""The one-image target, the train CLI's refusals, and the tiny measurements (deterministic formulas)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from common.data.synthetic import SHAPE_CLASSES, shape_factors, shapes
from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from common.stylegan2.snapshot import load_networks
from oneshot_gan.measure import (
    HUES,
    d_features,
    dominant_hue,
    memorisation_mse,
    pairwise_feature_distance,
    pairwise_pixel_l1,
)
from oneshot_gan.reproduce import in_domain_target
from oneshot_gan.target import target_dataset, target_images

REPO = Path(__file__).resolve().parents[2]


def test_target_is_centre_cropped_and_area_resized(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(90, 130, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    expected = cv2.resize(rgb[:, 20:110], (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(target_images(tmp_path / "wide.png", 32)[0], expected)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")  # grey -> 3 equal channels
    grey = target_images(tmp_path / "grey.png", 32)[0]
    assert grey.shape == (32, 32, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    folder = tmp_path / "few"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(rgb[:64, :64]).save(folder / "b.jpg")  # few-shot images of different sizes
    assert target_images(folder, 32).shape == (2, 32, 32, 3)
    dataset = target_dataset(tmp_path / "wide.png", 32)
    assert dataset.suffix == ".zip" and target_dataset(tmp_path / "wide.png", 32) == dataset  # cached by content


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "oneshot_gan.train", "--outdir", str(tmp_path / "runs"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_bad_targets_and_sources_are_one_line_and_leave_nothing(tmp_path):
    source = str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    cases = {
        ("--target", str(tmp_path / "missing.png"), "--source", source): "does not exist",
        ("--target", str(tmp_path / "notes.png"), "--source", source): "cannot be decoded",
        ("--target", str(tmp_path / "notes.txt"), "--source", source): "is not an image file",
        ("--target", str(tmp_path / "empty"), "--source", source): "no image files",
        ("--source", source): "no target",
        ("--target", str(tmp_path / "ok.png"), "--source", str(tmp_path / "nope.pkl")): "does not exist",
        ("--target", str(tmp_path / "ok.png"), "--source", source, "--set", "genda.psi_train=2"): "psi_train",
        ("--target", str(tmp_path / "ok.png"), "--source", str(tmp_path / "notes.txt")): "not a PyTorch file",
    }
    for args, message in cases.items():
        result = _train(tmp_path, "--cfg", "tiny", *args)
        assert result.returncode != 0, args
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("Error:"), result.stderr
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), args


def test_cli_trains_and_resumes_a_run_dir(tmp_path):
    source = str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))
    Image.fromarray(in_domain_target()).save(tmp_path / "yellow.png")
    result = _train(tmp_path, "--cfg", "tiny", "--target", str(tmp_path / "yellow.png"), "--source", source,
                    "--set", "train.total_kimg=0.048")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "00000-tiny"
    assert "done: 3 iterations" in result.stdout
    result = _train(tmp_path, "--resume", str(run), "--target", "x.png")
    assert result.returncode != 0 and "drop --target" in result.stderr
    result = _train(tmp_path, "--resume", str(run), "--set", "train.total_kimg=0.08")
    assert result.returncode == 0 and "done: 5 iterations" in result.stdout, result.stderr


def test_dominant_hue_recovers_the_shapes_foreground_hue():
    images, _ = shapes(200, 32, seed=3)
    factors = shape_factors(200, seed=3)
    expected = []
    for rgb in factors["foreground"]:
        hue = cv2.cvtColor(rgb.astype(np.float32)[None, None], cv2.COLOR_RGB2HSV)[0, 0, 0]
        expected.append(int(np.floor((hue + 30) / 60)) % 6)
    found = dominant_hue(images.transpose(0, 3, 1, 2))
    assert (found == np.array(expected)).mean() >= 0.95
    assert HUES[dominant_hue(in_domain_target().transpose(2, 0, 1)[None])[0]] == "yellow"
    assert len(SHAPE_CLASSES) == 4


def test_pairwise_distances_equal_the_brute_force_loops():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 3, 8, 8), dtype=np.uint8)
    pairs = list(itertools.combinations(range(5), 2))
    l1 = np.mean([np.abs(images[i] / 255.0 - images[j] / 255.0).mean() for i, j in pairs])
    assert pairwise_pixel_l1(images) == pytest.approx(l1, rel=1e-9)
    feats = {"b8": torch.randn(5, 4, 3, 3, dtype=torch.float64), "b16": torch.randn(5, 2, 6, 6, dtype=torch.float64)}
    levels = []
    for f in feats.values():
        u = f / f.norm(dim=1, keepdim=True)
        levels.append(np.mean([float((u[i] - u[j]).square().sum(0).mean()) for i, j in pairs]))
    assert pairwise_feature_distance(feats) == pytest.approx(np.mean(levels), rel=1e-9)


def test_memorisation_is_zero_for_copies_of_the_reference_or_its_mirror():
    target = in_domain_target().transpose(2, 0, 1)
    copies = np.stack([target, target[:, :, ::-1]])
    assert memorisation_mse(copies, target) == 0.0
    assert memorisation_mse(np.zeros_like(copies), target) > 0.05


def test_d_features_are_the_source_d_levels():
    D = load_networks(pretrained_source_gan(SourceTraining(total_kimg=0.032))).D.eval()
    feats = d_features(D, np.zeros((3, 3, 32, 32), dtype=np.uint8))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {"b32": (3, 64, 16, 16), "b16": (3, 64, 8, 8),
                                                             "b8": (3, 64, 4, 4)}


def test_eval_refusals_are_one_line(tmp_path):
    source = str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))
    shapes_zip = tmp_path / "set16.zip"
    from common.data import write_image_archive

    write_image_archive(shapes_zip, shapes(8, 16, seed=0)[0])
    cases = {
        ("--ckpt", source, "--data", str(shapes_zip), "--metrics", "lpips"): "unknown metric",
        ("--ckpt", source, "--data", str(tmp_path / "none.zip")): "does not exist",
        ("--ckpt", source, "--data", str(shapes_zip), "--inception-weights", str(tmp_path / "no.pt")): "no.pt",
    }
    for args, message in cases.items():
        result = subprocess.run([sys.executable, "-m", "oneshot_gan.eval", *args], cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_eval_computes_fid_and_pr_against_the_whole_set(tmp_path, monkeypatch):
    """The CLI path end to end with the offline proxy extractor standing in for Inception and VGG16."""
    from click.testing import CliRunner

    from common.metrics import build_extractor
    from oneshot_gan import eval as oneshot_eval

    source = str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))
    reference = tmp_path / "set32.zip"
    from common.data import write_image_archive

    write_image_archive(reference, shapes(40, 32, seed=0)[0])
    monkeypatch.setattr(oneshot_eval, "build_extractor", lambda name, weights, device: build_extractor("proxy"))
    result = CliRunner().invoke(oneshot_eval.main, ["--ckpt", source, "--data", str(reference), "--num-gen", "40",
                                                    "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    record = __import__("json").loads((tmp_path / "out" / "metrics.json").read_text())
    assert record["num_reference"] == 40 and record["fid"] > 0 and 0 <= record["recall"] <= 1
