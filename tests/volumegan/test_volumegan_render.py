"""render.py / generate.py: the official orbit, mp4s OpenCV reads back, marching cubes of a known density, the swap
grid's diagonal, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from volumegan.generate import main as generate_main
from volumegan.official import load_volumegan
from volumegan.render import density_grid, main, mesh, orbit_cameras, swap_grid, write_mp4

CHECKPOINT = Path(__file__).with_name("fixtures") / "official_checkpoint_small.pth"


def test_orbit_is_the_official_trajectory():
    cameras = orbit_cameras(1.0, 2.0, 5)
    assert cameras[0] == pytest.approx((1.0, 2.2)) and cameras[1] == pytest.approx((1.4, 2.0))
    assert cameras[2] == pytest.approx((1.0, 1.8)) and cameras[4] == pytest.approx((1.0, 2.2))


def test_mp4_reads_back(tmp_path):
    import cv2

    frames = np.random.default_rng(0).integers(0, 255, (6, 3, 32, 48), dtype=np.uint8)
    write_mp4(tmp_path / "a.mp4", frames)
    video = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    read = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        read.append(frame)
    assert len(read) == 6 and read[0].shape == (32, 48, 3)


def test_marching_cubes_of_a_ball_and_a_level_outside_the_density():
    axis = np.linspace(-0.5, 0.5, 41)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    density = 10 * (0.3 - np.sqrt(x**2 + y**2 + z**2))  # crosses 0 on the sphere of radius 0.3
    vertices, faces = mesh(density, 1.0, 0.0)
    radii = np.linalg.norm(vertices, axis=1)
    assert len(faces) > 100 and abs(radii.mean() - 0.3) < 0.01 and radii.std() < 0.01
    with pytest.raises(ValueError, match="never crosses --level 5"):
        mesh(density, 1.0, 5.0)


def test_density_grid_and_swap_grid_of_an_official_generator():
    G = load_volumegan(CHECKPOINT).G_ema
    ws = G.mapping(torch.randn(3, 16), None)
    grid = density_grid(G, ws[:1], 5, 0.4)
    point = torch.tensor([[[-0.2, 0.0, 0.1]]])  # lattice index (0, 2, 3)
    sigma, _ = G.synthesis.field(ws[:1, :2], point)
    assert grid.shape == (5, 5, 5) and grid[0, 2, 3] == pytest.approx(float(sigma), abs=1e-5)
    images = swap_grid(G, ws)
    yaw = torch.full((3, 1), G.synthesis.rays.yaw_mean)
    pitch = torch.full((3, 1), G.synthesis.rays.pitch_mean)
    torch.manual_seed(0)
    with torch.no_grad():
        plain = G.synthesis(ws, noise_mode="const", yaw=yaw, pitch=pitch, perturb="none")
    plain = (plain * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert images.shape == (9, 3, 32, 32) and np.array_equal(images[0], plain[0])  # row 0, column 0: latent 0
    assert not np.array_equal(images[1], plain[1])  # structure of 0, texture of 1


def test_cli_outputs_and_refusals(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["--network", str(CHECKPOINT), "--mode", "video", "--seeds", "0-1", "--frames", "3",
                                  "--steps-mult", "1", "--outdir", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["orbit.png", "seed0000.mp4", "seed0001.mp4"]
    result = runner.invoke(main, ["--network", str(CHECKPOINT), "--mode", "mesh", "--seeds", "0", "--grid", "8",
                                  "--level", "1e6", "--outdir", str(tmp_path / "m")])
    assert result.exit_code != 0 and "never crosses --level 1e+06" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()
    (tmp_path / "text.pt").write_text("nothing")
    result = runner.invoke(generate_main, ["--network", str(tmp_path / "text.pt"), "--outdir", str(tmp_path / "g")])
    assert result.exit_code != 0 and "Traceback" not in result.output and not (tmp_path / "g").exists()
    result = runner.invoke(generate_main, ["--network", str(CHECKPOINT), "--seeds", "0-3", "--trunc", "0.7",
                                           "--trunc-layers", "4", "--outdir", str(tmp_path / "g")])
    assert result.exit_code == 0 and (tmp_path / "g" / "grid.png").is_file(), result.output
    assert len(list((tmp_path / "g").iterdir())) == 5  # 4 seeds and the grid


def test_bench_runs_without_the_official_code():
    from volumegan.bench import main as bench_main

    result = CliRunner().invoke(bench_main, ["--resolution", "32", "--batch", "1", "--repeats", "1"])
    assert result.exit_code == 0 and "NeRF branch" in result.output and "training step" in result.output, result.output
    result = CliRunner().invoke(bench_main, ["--official", "/", "--resolution", "32"])
    assert result.exit_code != 0 and "the official code does not import" in result.output
