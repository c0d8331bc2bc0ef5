"""SlowOnly-R50 and its x1/4 auxiliary (spec cmpl.md §3, §9) and the cross pseudo-label rule (§2.1, §9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cmpl.cmpl import PseudoLabels, cmpl_unsupervised_loss, fixmatch_unsupervised_loss
from cmpl.slowonly import Recognizer, SlowOnly, count_parameters


@pytest.mark.parametrize("width, backbone, k400, ucf101, features", [
    (64, 31_634_496, 32_454_096, 31_841_445, 2048),  # F: SlowOnly-R50
    (16, 1_988_880, 2_194_080, 2_040_693, 512),  # A: x1/4 width
    (8, 501_128, 603_928, 527_085, 256),  # x1/8 (ablation)
])
def test_parameter_counts_of_spec_section_3(width, backbone, k400, ucf101, features):
    with torch.device("meta"):
        assert count_parameters(SlowOnly(width)) == backbone
        assert count_parameters(Recognizer(400, width)) == k400
        assert count_parameters(Recognizer(101, width)) == ucf101
        assert SlowOnly(width).feature_dim == features


def test_slowonly_keeps_time_and_strides_space_by_32():
    net = SlowOnly(4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 8, 64, 64))
    assert out.shape == (2, 128, 8, 2, 2)
    inflated = [m.conv1[0].kernel_size for m in net.stages[2]] + [m.conv1[0].kernel_size for m in net.stages[3]]
    assert set(inflated) == {(3, 1, 1)} and net.stages[0][0].conv1[0].kernel_size == (1, 1, 1)
    with pytest.raises(ValueError, match="one per stage"):
        SlowOnly(4, inflate=(1, 1))


def test_pseudo_labels_threshold_and_normalise_by_the_whole_batch():
    weak = torch.tensor([[4.0, 0.0], [0.0, 0.1]])  # confident class 0; unsure
    labels = PseudoLabels.from_logits(weak, tau=0.95)
    assert labels.labels.tolist() == [0, 1] and labels.mask.tolist() == [1.0, 0.0]
    strong = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    assert labels.loss(strong).item() == pytest.approx(math.log(2) / 2)  # one confident clip, divided by 2


def test_cross_direction_masks_and_stop_gradient():
    torch.manual_seed(0)
    primary_weak = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)  # F confident on clip 0
    aux_weak = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]], requires_grad=True)  # A confident on clip 1
    primary_strong = torch.randn(2, 3, requires_grad=True)
    aux_strong = torch.randn(2, 3, requires_grad=True)
    loss, from_f, from_a = cmpl_unsupervised_loss(primary_weak, aux_weak, primary_strong, aux_strong, tau=0.95)
    # F's strong view is taught on clip 1 only (A's confident label 2); A's strong view on clip 0 (F's label 0)
    expected = (torch.nn.functional.cross_entropy(primary_strong[1:], torch.tensor([2]))
                + torch.nn.functional.cross_entropy(aux_strong[:1], torch.tensor([0]))) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert from_f.mask.tolist() == [1.0, 0.0] and from_a.mask.tolist() == [0.0, 1.0]
    loss.backward()
    assert primary_weak.grad is None and aux_weak.grad is None  # the labellers get no gradient
    assert primary_strong.grad[0].abs().sum() == 0 and aux_strong.grad[1].abs().sum() == 0


def test_cmpl_is_twice_fixmatch_when_both_networks_are_one_and_empty_masks_give_zero():
    weak, strong = torch.randn(6, 4) * 5, torch.randn(6, 4)
    cmpl, _, _ = cmpl_unsupervised_loss(weak, weak, strong, strong, tau=0.5)
    fixmatch, _ = fixmatch_unsupervised_loss(weak, strong, tau=0.5)
    assert cmpl.item() == pytest.approx(2 * fixmatch.item(), rel=1e-6)
    assert cmpl_unsupervised_loss(weak, weak, strong, strong, tau=1.01)[0].item() == 0.0


def test_motion_clips_are_balanced_deterministic_and_move_as_their_class():
    import numpy as np

    from cmpl.synthetic import actor_path, motion_clips, num_classes

    clips, labels = motion_clips(48, seed=3)
    again, _ = motion_clips(48, seed=3)
    assert clips.shape == (48, 16, 32, 32, 3) and clips.dtype == np.uint8 and np.array_equal(clips, again)
    assert np.bincount(labels, minlength=8).tolist() == [6] * 8
    assert num_classes(True) == 24 and motion_clips(24, 0, appearance=True)[1].max() == 23
    t = np.arange(16.0)
    rng = np.random.default_rng(0)
    x, _, _ = actor_path("right", t, 1.0, 32, rng)
    assert np.allclose(np.diff(x), 1.0)
    _, y, _ = actor_path("up", t, 1.0, 32, rng)
    assert np.allclose(np.diff(y), -1.0)  # image rows grow downwards
    x, y, _ = actor_path("clockwise", t, 1.0, 32, rng)
    angle = np.unwrap(np.arctan2(y - 16, x - 16))
    assert np.allclose(np.diff(angle), 0.5)  # on screen (y down) an increasing angle turns clockwise
    _, _, radius = actor_path("shrink", t, 1.0, 32, rng)
    assert np.all(np.diff(radius) <= 0) and radius[0] == 7.5


@pytest.mark.parametrize("row, classes, primary, aux, fraction, method", [
    ("k400_1pct", 400, 32_454_096, 2_194_080, 0.01, "cmpl"),
    ("k400_10pct", 400, 32_454_096, 2_194_080, 0.1, "cmpl"),
    ("k400_1pct_fixmatch", 400, 32_454_096, 2_194_080, 0.01, "fixmatch"),
    ("ucf101_1pct", 101, 31_841_445, 2_040_693, 0.01, "cmpl"),
    ("ucf101_10pct", 101, 31_841_445, 2_040_693, 0.1, "cmpl"),
    ("ucf101_1pct_fixmatch", 101, 31_841_445, 2_040_693, 0.01, "fixmatch"),
])
def test_paper_rows_build_the_spec_networks(row, classes, primary, aux, fraction, method):
    from cmpl.config import CMPLConfig, config_path
    from cmpl.training import build_network
    from common.config import load_config

    cfg = load_config(CMPLConfig, config_path(row))
    assert (cfg.data.num_classes, cfg.data.label_fraction, cfg.ssl.method) == (classes, fraction, method)
    assert (cfg.ssl.tau, cfg.ssl.lambda_u, cfg.ssl.mu, cfg.primary_step()) == (0.95, 1.0, 4, 4)
    with torch.device("meta"):
        assert count_parameters(build_network(cfg.primary, classes)) == primary
        assert count_parameters(build_network(cfg.aux, classes)) == aux


def test_complementarity_on_networks_with_known_answers():
    from cmpl.config import CMPLConfig, config_path
    from cmpl.measure import complementarity
    from cmpl.training import ArrayClips
    from common.config import load_config

    cfg = load_config(CMPLConfig, config_path("tiny"))
    labels = torch.tensor([0, 1, 0, 1])
    clips = ArrayClips(np.zeros((4, 16, 32, 32, 3), dtype=np.uint8), labels.numpy())

    class Fixed(torch.nn.Module):  # a network whose logits are given per clip (in order)
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.tensor(logits)

        def forward(self, x):
            return self.logits[: len(x)]

    # F confidently right on clips 0, 1, confidently wrong on 2, unsure on 3; A confidently right on 1, 2, 3
    primary = Fixed([[9.0, 0.0], [0.0, 9.0], [0.0, 9.0], [0.1, 0.0]])
    aux = Fixed([[0.0, 0.1], [0.0, 9.0], [9.0, 0.0], [0.0, 9.0]])
    out = complementarity(cfg, primary, aux, clips)
    assert out["complementarity"] == 0.75  # clips 0 (F only), 2 and 3 (A only)
    assert out["aux_right_where_primary_wrong"] == 1.0  # F wrong on 2 and 3; A confident and right on both
    assert out["primary_confident"] == 0.75 and out["primary_label_accuracy"] == pytest.approx(2 / 3)


def test_smaller_stem_strides_are_the_same_network_on_more_positions():
    with torch.device("meta"):
        assert count_parameters(SlowOnly(16, stem_stride=1)) == count_parameters(SlowOnly(16, stem_stride=2)) \
            == 1_988_880
    for stride, side in ((1, 4), (2, 2), (4, 1)):
        net = SlowOnly(4, stage_blocks=(1, 1, 1, 1), stem_stride=stride).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 4, 32, 32)).shape == (1, 128, 4, side, side)
    with pytest.raises(ValueError, match="stem_stride"):
        SlowOnly(4, stem_stride=3)
