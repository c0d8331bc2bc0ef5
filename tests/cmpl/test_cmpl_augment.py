"""Weak / strong views are clip-consistent: every frame gets the same crop, flip, colour change and cutout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmpl.augment import AugmentConfig, build_view, eval_view

TINY = AugmentConfig(resize=None, crop=32, pad=2, flip=False, strong="photometric", cutout=12 / 32, noise=0.0)
PAPER = AugmentConfig(resize=64, crop=56)


@pytest.mark.parametrize("cfg", [TINY, PAPER], ids=["tiny", "paper"])
@pytest.mark.parametrize("strong", [False, True])
def test_every_frame_gets_the_same_parameters(cfg, strong):
    frame = np.random.default_rng(0).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    clip = np.repeat(frame, 6, axis=0)  # six identical frames stay identical after a clip-consistent transform
    torch.manual_seed(0)
    out = build_view(cfg, strong)(clip)
    assert out.shape == (3, 6, cfg.crop, cfg.crop) and out.dtype == torch.float32
    for t in range(1, 6):
        assert torch.equal(out[:, t], out[:, 0])


def test_strong_view_erases_one_square_through_all_frames_and_the_test_view_is_fixed():
    clip = np.full((4, 32, 32, 3), 200, dtype=np.uint8)
    torch.manual_seed(1)
    out = build_view(TINY, strong=True)(clip)
    zero = -np.array([123.675, 116.28, 103.53]) / np.array([58.395, 57.12, 57.375])
    erased = np.isclose(out[:, 0].numpy(), zero[:, None, None], atol=1e-4).all(axis=0)
    assert erased.sum() == 12 * 12
    view = eval_view(PAPER)
    frames = np.random.default_rng(2).integers(0, 256, (3, 80, 100, 3), dtype=np.uint8)
    assert torch.equal(view(frames), view(frames)) and view(frames).shape == (3, 3, 56, 56)


def test_views_pickle_for_dataloader_workers_under_spawn():
    import pickle

    clip = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for view in (build_view(TINY, strong=True), eval_view(PAPER)):
        copy = pickle.loads(pickle.dumps(view))
        torch.manual_seed(4)
        a = view(clip)
        torch.manual_seed(4)
        assert torch.equal(a, copy(clip))
