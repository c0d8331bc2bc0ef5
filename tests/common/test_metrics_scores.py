"""Closed forms and parity facts of metrics.md §10 for FD/FID, KID, IS and precision/recall (feature level)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from common.metrics import (
    FeatureStats,
    ProtocolMismatchError,
    fid_from_features,
    fid_from_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mean_cov,
    precision_recall,
    to_uint8,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, 2 * d))
    return a @ a.T / (2 * d)


def _sg2ada_fd(mu1, s1, mu2, s2) -> float:
    """The reference formula of stylegan2-ada-pytorch: real part of the trace of scipy's sqrtm(S1 S2)."""
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)))


def test_identical_gaussians_have_zero_distance():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(16), _random_spd(rng, 16)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_identity_covariances_give_squared_mean_shift():
    d = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(np.zeros(3), np.eye(3), d, np.eye(3)) == pytest.approx(1 + 4 + 0.25, rel=1e-12)


def test_diagonal_covariances_closed_form():
    # commuting covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # 1 + 1 + 6.25
    assert frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(8.25)


@pytest.mark.parametrize("d", [8, 64])
def test_eigenvalue_form_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_sg2ada_fd(mu1, s1, mu2, s2), rel=1e-6)


def test_biased_covariance_equals_pytorch_fid_with_rescaled_covariance():
    rng = np.random.default_rng(1)
    n = 200
    x, y = rng.standard_normal((n, 16)), rng.standard_normal((n, 16)) * 1.3 + 0.2
    # pytorch-fid: np.mean + np.cov(rowvar=False) (/(n-1))
    mx, cx, my, cy = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    assert fid_from_features(x, y, unbiased=True) == pytest.approx(_sg2ada_fd(mx, cx, my, cy), rel=1e-9)
    rescale = (n - 1) / n
    biased = fid_from_features(x, y)
    assert biased == pytest.approx(_sg2ada_fd(mx, cx * rescale, my, cy * rescale), rel=1e-9)
    assert abs(biased - fid_from_features(x, y, unbiased=True)) > 1e-3  # the conventions really differ at n=200


def test_streaming_stats_match_direct_moments_and_truncate():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 5)).astype(np.float32)
    stats = FeatureStats("p", capture_all=True, max_items=45)
    for chunk in np.array_split(x, 7):
        stats.append(chunk)
    assert stats.num_items == 45 and stats.is_full()
    for unbiased in (False, True):
        mu, cov = stats.mean_cov(unbiased)
        mu_ref, cov_ref = mean_cov(x[:45], unbiased)
        np.testing.assert_allclose(mu, mu_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cov, cov_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(stats.features(), x[:45])


def test_stats_round_trip_and_protocol_check(tmp_path):
    rng = np.random.default_rng(3)
    a, b = FeatureStats("tf_inception:abc:tf1", capture_all=True), FeatureStats("tf_inception:abc:tf1")
    a.append(rng.standard_normal((30, 4)))
    b.append(rng.standard_normal((30, 4)) + 1)
    loaded = FeatureStats.load(a.save(tmp_path / "a.npz", key={"k": 1}))
    assert loaded.protocol == a.protocol and loaded.num_items == 30
    np.testing.assert_array_equal(loaded.features(), a.features())
    assert fid_from_stats(loaded, b) == pytest.approx(fid_from_stats(a, b), rel=1e-12)
    other = FeatureStats("tf_inception:abc:clean")
    other.append(rng.standard_normal((30, 4)))
    with pytest.raises(ProtocolMismatchError, match="different pipelines"):
        fid_from_stats(a, other)


def test_kid_closed_form_for_point_masses():
    # x = 0 (all fakes), y = sqrt(d) e1 (all reals): k(x,x) = 1, k(y,y) = (1 + 1)^3 = 8, k(x,y) = 1 -> KID = 7
    d, m = 4, 10
    fake = np.zeros((m, d))
    real = np.zeros((m, d))
    real[:, 0] = np.sqrt(d)
    assert kernel_inception_distance(real, fake, num_subsets=3) == pytest.approx(7.0, rel=1e-12)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((600, 8)), rng.standard_normal((600, 8))
    same = kernel_inception_distance(a, b, num_subsets=20, max_subset_size=300)
    shifted = kernel_inception_distance(a, b + 0.5, num_subsets=20, max_subset_size=300)
    assert abs(same) < 0.05 * shifted


def test_inception_score_closed_forms():
    k = 8
    one_hot = np.eye(k).repeat(5, axis=0)  # confident and uniformly spread over k classes -> IS = k
    assert inception_score(one_hot + 0.0, num_splits=1) == pytest.approx((k, 0.0), rel=1e-12)
    identical = np.full((40, k), 1.0 / k)  # p(y|x) = p(y) -> KL = 0 -> IS = 1
    assert inception_score(identical, num_splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_precision_recall_hand_example():
    # reals on a line at 0..4: with k=1 every radius is 1; fakes at 0.5 (covered) and 10 (not) -> precision 1/2.
    # fakes' radii (k=1): |10 - 0.5| = 9.5, which covers every real point -> recall 1.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])
    fake = torch.tensor([[0.5], [10.0]])
    assert precision_recall(real, fake, k=1) == pytest.approx((0.5, 1.0))
    assert precision_recall(real, fake, k=1, row_batch=2, col_batch=3) == pytest.approx((0.5, 1.0))


def test_uint8_conversion_rounds_like_stylegan2_ada():
    x = torch.tensor([-1.0, -0.999, 0.0, 1.0 / 255, 1.0, 1.5])
    # -1 -> 0.5 -> 0; 0 -> 128; 1/255 -> 128.5 -> 128 (truncation); 1 -> 255.5 -> clamp 255
    assert to_uint8(x).tolist() == [0, 0, 128, 128, 255, 255]
