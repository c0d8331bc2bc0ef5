"""Official checkpoints (fixtures/official_checkpoint_small.pth, written in the layout of the official runner with
EasyDict arguments by make_official_checkpoint.py): the restricted read, networks built from the recorded arguments,
G and G_ema images equal to the official code's, and refusals."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch

from common.checkpoint import CheckpointError
from volumegan import rendering as R
from volumegan.official import official_networks, read_official_checkpoint

FIXTURES = Path(__file__).with_name("fixtures")


def _official_stream_image(G, z: torch.Tensor, seed: int) -> torch.Tensor:
    """G's image at yaw = pitch = pi/2, no jitter, const noise, drawing what the official forward draws (cameras,
    zero-scaled jitter and compositing noise) so that the importance samples come from the same numbers."""
    ws = G.mapping(z, None)
    torch.manual_seed(seed)
    batch, res, steps = len(z), G.synthesis.nerf_res, G.synthesis.rays.num_steps
    torch.randn(batch, 1), torch.randn(batch, 1), torch.rand(batch, res, res, steps, 1)
    yaw = pitch = torch.full((batch, 1), math.pi / 2)
    coarse = R.sample_rays(batch, res, G.synthesis.rays.replace(perturb="none"), yaw, pitch)
    field = G.synthesis.field
    sigma_c, feature_c = field(ws[:, :2], coarse.points)
    torch.randn(batch, res * res, steps, 1)
    fine = R.importance_rays(coarse, R.volume_render(feature_c, sigma_c, coarse.depths).weights, steps)
    sigma_f, feature_f = field(ws[:, :2], fine.points)
    depths, order = torch.cat([fine.depths, coarse.depths], -2).sort(-2)
    features = torch.cat([feature_f, feature_c], -2)
    features = features.gather(-2, order.expand(*order.shape[:-1], features.shape[-1]))
    out = R.volume_render(features, torch.cat([sigma_f, sigma_c], -2).gather(-2, order), depths)
    return G.synthesis.renderer(out.values.permute(0, 3, 1, 2), ws[:, 2:], noise_mode="const")


def test_networks_from_an_official_checkpoint_render_as_the_official_code():
    nets = official_networks(FIXTURES / "official_checkpoint_small.pth")
    expected = torch.load(FIXTURES / "official_checkpoint_small_images.pt", weights_only=True)
    assert nets.G.img_resolution == 32 and nets.G.synthesis.nerf_res == 8 and nets.G.num_ws == 8
    assert nets.D.img_resolution == 32 and not nets.G.training
    assert not torch.equal(nets.G.mapping.w_avg, nets.G_ema.mapping.w_avg)  # generator_smooth is G_ema
    with torch.no_grad():
        for G, image in zip((nets.G, nets.G_ema), expected["images"]):
            assert torch.allclose(_official_stream_image(G, expected["z"], int(expected["seed"])), image, atol=1e-4)


def test_the_read_is_restricted_and_foreign_files_are_one_line(tmp_path):
    saved = read_official_checkpoint(FIXTURES / "official_checkpoint_small.pth")
    assert saved["running_metadata"]["seen_img"] == 409600 and saved["model_kwargs_init"]["generator"]["nerf_res"] == 8
    torch.save({"models": {}, "payload": pickle.Unpickler}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing the global pickle.Unpickler"):
        read_official_checkpoint(tmp_path / "evil.pth")
    torch.save({"G": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="has no 'models' entry"):
        read_official_checkpoint(tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        read_official_checkpoint(tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="no file at"):
        read_official_checkpoint(tmp_path / "missing.pth")
