"""ES-DDPM diffusion: spec §9 parity facts (schedules, respacing, NFE and timesteps, x_{T'} coefficients) and closed
forms (q_sample moments, posterior, DDIM determinism, early stop at k = T, hybrid-loss zero point)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from es_ddpm.diffusion import GaussianDiffusion, cosine_betas, linear_betas, space_timesteps


class CountingModel:
    """ε-model that records every call's (x, original timesteps) and returns a fixed fraction of x."""

    def __init__(self, out_channels_factor: int = 1) -> None:
        self.calls: list[tuple[torch.Tensor, list[int]]] = []
        self.factor = out_channels_factor

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), t.tolist()))
        eps = 0.1 * x
        return torch.cat([eps, torch.zeros_like(x)], dim=1) if self.factor == 2 else eps


@pytest.mark.parametrize(
    ("schedule", "t_prime", "expected"),
    [("linear", 100, 0.8970), ("linear", 200, 0.6590), ("linear", 300, 0.3964),
     ("cosine", 100, 0.9721), ("cosine", 200, 0.8987)],
)
def test_alpha_bar_at_early_stop_matches_spec(schedule, t_prime, expected):
    betas = linear_betas(1000) if schedule == "linear" else cosine_betas(1000)
    assert betas.dtype == np.float64
    assert np.cumprod(1 - betas)[t_prime - 1] == pytest.approx(expected, abs=5e-5)


def test_space_timesteps_parity():
    s250 = space_timesteps(1000, "250")
    assert len(s250) == 250 and s250[:4] == [0, 4, 8, 12] and s250[24] == 96
    assert space_timesteps(1000, "200")[19] == 95
    assert space_timesteps(1000, "100")[9] == 91
    assert space_timesteps(1000, "ddim200") == list(range(0, 1000, 5))
    assert space_timesteps(1000, "ddim100")[9] == 90
    assert space_timesteps(1000, "1000") == list(range(1000))
    with pytest.raises(ValueError, match="cannot keep"):
        space_timesteps(1000, "1001")
    with pytest.raises(ValueError, match="not a step count"):
        space_timesteps(1000, "ddimx")
    with pytest.raises(ValueError, match="keeps no step"):
        space_timesteps(1000, "0,0")


def _official_space_timesteps(num_timesteps: int, counts: list[int]) -> list[int]:
    """The arithmetic of guided-diffusion ``respace.space_timesteps`` (section-count branch): a float index that
    accumulates the fractional stride and is rounded per step."""
    size_per, extra = divmod(num_timesteps, len(counts))
    steps, start = set(), 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        frac_stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur_idx = 0.0
        for _ in range(count):
            steps.add(start + round(cur_idx))
            cur_idx += frac_stride
        start += size
    return sorted(steps)


def test_space_timesteps_equals_the_official_arithmetic_for_every_count():
    for count in range(1, 1001):
        assert space_timesteps(1000, str(count)) == _official_space_timesteps(1000, [count]), count
    # values printed by the official respace.py (ZhaoyangLyu/Early_Stopped_DDPM): len and sum of the kept set
    for chain, size, total in (("21", 21, 10489), ("123", 123, 61438), ("999", 999, 499000),
                               ("10,10,5", 25, 10830), ("7,13,2,250", 272, 225615)):
        kept = space_timesteps(1000, chain)
        assert (len(kept), sum(kept)) == (size, total), chain
    assert 499 in space_timesteps(1000, "21") and 500 not in space_timesteps(1000, "21")


def test_space_timesteps_multi_section_strings_match_the_official_arithmetic():
    rng = random.Random(0)
    for _ in range(2000):
        num_timesteps = rng.choice([1000, 4000, 250, 999])
        sections = rng.randint(1, 6)
        counts = [rng.randint(0, num_timesteps // sections) for _ in range(sections)]
        if not any(counts):
            continue
        assert space_timesteps(num_timesteps, ",".join(map(str, counts))) == _official_space_timesteps(
            num_timesteps, counts), (num_timesteps, counts)


def test_early_stop_at_T_is_the_whole_ddim_chain():
    for chain, k in (("ddim200", 200), ("ddim100", 100), ("250", 250)):
        diffusion = GaussianDiffusion.respaced(linear_betas(1000), chain)
        assert diffusion.base_timesteps == 1000 and diffusion.steps_below(1000) == k
    with pytest.raises(ValueError, match="beyond the process's T = 1000"):
        GaussianDiffusion.respaced(linear_betas(1000), "ddim200").steps_below(1001)


@pytest.mark.parametrize(
    ("chain", "t_prime", "k", "effective"),
    [("1000", 100, 100, 100), ("1000", 200, 200, 200), ("500", 100, 50, 99), ("250", 100, 25, 97),
     ("250", 200, 50, 198), ("200", 100, 20, 96), ("100", 100, 10, 92), ("ddim200", 100, 20, 96),
     ("ddim100", 100, 10, 91)],
)
def test_effective_t_prime_table(chain, t_prime, k, effective):
    diffusion = GaussianDiffusion.respaced(linear_betas(1000), chain)
    assert diffusion.steps_below(t_prime) == k
    assert diffusion.early_stop_stats(k)["effective_t_prime"] == effective


def test_respaced_alpha_bar_equals_base_at_kept_steps():
    base = cosine_betas(1000)
    spaced = GaussianDiffusion.respaced(base, "250")
    assert np.allclose(spaced.alphas_cumprod, np.cumprod(1 - base)[spaced.timestep_map], rtol=1e-12, atol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_early_stop_counts_nfe_and_original_timesteps(sampler):
    diffusion = GaussianDiffusion.respaced(linear_betas(1000), "250")
    model = CountingModel()
    x_prior = torch.rand(2, 3, 4, 4) * 2 - 1
    out = diffusion.sample_early_stop(model, x_prior, k=25, sampler=sampler, generator=torch.Generator().manual_seed(0))
    assert len(model.calls) == 25
    assert [t[0] for _, t in model.calls] == list(range(96, -1, -4))
    assert out.shape == x_prior.shape and out.abs().max() <= 1.0


def test_full_chain_nfe_is_chain_length():
    diffusion = GaussianDiffusion.respaced(linear_betas(1000), "ddim50")
    model = CountingModel()
    diffusion.sample(model, (1, 1, 2, 2), sampler="ddim", generator=torch.Generator().manual_seed(0))
    assert len(model.calls) == 50 and model.calls[0][1] == [980] and model.calls[-1][1] == [0]


def test_x_t_prime_coefficients():
    diffusion = GaussianDiffusion.respaced(linear_betas(1000), "1000")
    stats = diffusion.early_stop_stats(100)
    assert stats["sqrt_alpha_bar"] == pytest.approx(0.9471, abs=5e-5)
    assert stats["sqrt_one_minus_alpha_bar"] == pytest.approx(0.3209, abs=5e-5)
    assert stats["snr"] == pytest.approx(8.71, abs=5e-3)
    # the first model input is exactly √ᾱ x_g + √(1-ᾱ) ε with the generator's first draw as ε
    model = CountingModel()
    x_prior = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    diffusion.sample_early_stop(model, x_prior, k=100, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(x_prior.shape, generator=torch.Generator().manual_seed(3))
    expected = 0.9470 * x_prior + 0.3209 * eps
    assert torch.allclose(model.calls[0][0], expected, atol=2e-4)


def test_q_sample_moments():
    diffusion = GaussianDiffusion(linear_betas(1000))
    x0 = torch.full((200_000, 1), 0.5, dtype=torch.float64)
    t = torch.full((len(x0),), 299, dtype=torch.long)
    torch.manual_seed(0)
    xt = diffusion.q_sample(x0, t)
    abar = np.cumprod(1 - linear_betas(1000))[299]
    assert xt.mean().item() == pytest.approx(0.5 * math.sqrt(abar), abs=5e-3)
    assert xt.var().item() == pytest.approx(1 - abar, rel=1e-2)


def test_posterior_matches_gaussian_bayes_rule():
    diffusion = GaussianDiffusion(cosine_betas(100))
    i = 40
    abar, abar_prev, beta = diffusion.alphas_cumprod[i], diffusion.alphas_cumprod[i - 1], diffusion.betas[i]
    x0, xt = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-0.7]], dtype=torch.float64)
    mean, var, log_var = diffusion.q_posterior(x0, xt, torch.tensor([i]))
    # q(x_{t-1}|x_0) = N(√ᾱ_{t-1} x0, 1-ᾱ_{t-1}); q(x_t|x_{t-1}) = N(√α_t x_{t-1}, β_t): product of Gaussians
    precision = 1 / (1 - abar_prev) + (1 - beta) / beta
    expected_mean = (math.sqrt(abar_prev) * 0.3 / (1 - abar_prev) + math.sqrt(1 - beta) * -0.7 / beta) / precision
    assert var.item() == pytest.approx(1 / precision, rel=1e-10)
    assert log_var.item() == pytest.approx(math.log(1 / precision), rel=1e-10)
    assert mean.item() == pytest.approx(expected_mean, rel=1e-10)
    assert 1 - abar > 0


def test_ddim_eta0_is_deterministic_and_ddpm_is_not():
    diffusion = GaussianDiffusion.respaced(linear_betas(1000), "20")
    model = CountingModel()
    x_prior = torch.rand(2, 1, 4, 4) * 2 - 1
    x_start = diffusion.q_sample(x_prior, torch.full((2,), 9), torch.randn(2, 1, 4, 4))
    runs = {
        (s, seed): diffusion.sample_from(model, x_start, 10, sampler=s, generator=torch.Generator().manual_seed(seed))
        for s in ("ddim", "ddpm")
        for seed in (0, 1)
    }
    assert torch.equal(runs["ddim", 0], runs["ddim", 1])
    assert not torch.allclose(runs["ddpm", 0], runs["ddpm", 1])


def test_early_stop_with_k_equal_T_is_the_full_sampler():
    # cosine schedule: ᾱ_T ≈ 0, so q_sample(x_prior, T-1) is the noise itself up to √ᾱ_T ~ 1e-3
    diffusion = GaussianDiffusion(cosine_betas(50), "learned_range")
    assert diffusion.alphas_cumprod[-1] < 1e-5
    model = CountingModel(out_channels_factor=2)
    x_prior = torch.rand(3, 1, 4, 4) * 2 - 1
    early = diffusion.sample_early_stop(model, x_prior, k=50, generator=torch.Generator().manual_seed(7))
    full = diffusion.sample(model, x_prior.shape, generator=torch.Generator().manual_seed(7))
    assert len(model.calls) == 100
    assert torch.allclose(early, full, atol=1e-3)


def test_hybrid_loss_vanishes_for_the_true_posterior():
    diffusion = GaussianDiffusion(linear_betas(100), "learned_range")
    x0 = torch.rand(4, 1, 4, 4, dtype=torch.float64) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([5, 20, 50, 99])
    # ε exact and v = -1 (Σ = β̃_t) make p_θ(x_{t-1}|x_t) equal q(x_{t-1}|x_t, x_0): KL 0
    perfect = lambda x, _t: torch.cat([noise, -torch.ones_like(x)], dim=1)
    terms = diffusion.training_losses(perfect, x0, t, noise)
    assert terms["mse"].abs().max() < 1e-12 and terms["vb"].abs().max() < 1e-9
    wrong = lambda x, _t: torch.cat([noise, torch.ones_like(x)], dim=1)
    assert (diffusion.training_losses(wrong, x0, t, noise)["vb"][:2] > 1e-3).all()  # β_t ≈ β̃_t only at large t


def test_bad_k_and_bad_output_channels_are_clear_errors():
    diffusion = GaussianDiffusion.respaced(linear_betas(1000), "100")
    with pytest.raises(ValueError, match="k=101 must be in 1..100"):
        diffusion.sample_early_stop(CountingModel(), torch.zeros(1, 1, 2, 2), k=101)
    with pytest.raises(ValueError, match="T'=5000 is beyond the process's T = 1000"):
        diffusion.steps_below(5000)
    with pytest.raises(ValueError, match="keeps no step"):
        GaussianDiffusion.respaced(linear_betas(1000), "ddim10").steps_below(0)
    learned = GaussianDiffusion(cosine_betas(10), "learned_range")
    with pytest.raises(ValueError, match="set learn_sigma"):
        learned.sample_early_stop(CountingModel(), torch.zeros(1, 1, 2, 2), k=2)
