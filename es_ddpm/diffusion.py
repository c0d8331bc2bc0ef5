"""Gaussian diffusion (Ho et al. 2020; Nichol & Dhariwal 2021) with respacing and ES-DDPM early-stopped sampling.

Conventions follow openai/guided-diffusion (spec §2.1, §2.4): code index i in 0..T-1 is paper step t = i + 1;
schedule coefficients are float64 numpy arrays, gathered per sample and cast to the input's dtype; the model
predicts ε (and, with learned sigma, v in [-1, 1] interpolating log β̃_t and log β_t, IDDPM Eq. 15).

A chain string ('250', '10,10,5', 'ddim100') keeps a subset S of the T base steps (:func:`space_timesteps`); the
respaced process has β'_j = 1 - ᾱ_{S[j]} / ᾱ_{S[j-1]}, so ᾱ' at index j equals the base ᾱ at S[j], and the model is
always called with the original step S[j] (``timestep_map``).

ES-DDPM (spec §2.4): draw x_{T'} = √ᾱ_{S[k-1]} x_prior + √(1-ᾱ_{S[k-1]}) ε from a generator sample x_prior, then run
only the last k reverse steps (NFE = k), with the ancestral sampler or DDIM (η).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Model = Callable[..., Tensor]
CondFn = Callable[..., Tensor]
VarianceType = Literal["learned_range", "fixed_large", "fixed_small"]


def linear_betas(num_timesteps: int) -> np.ndarray:
    """β = linspace(1e-4·1000/T, 0.02·1000/T, T) in float64 (Ho et al. 2020, scaled to any T as guided-diffusion)."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """IDDPM Eq. 17: ᾱ(u) = cos²((u + 0.008)/1.008 · π/2), β_i = min(1 - ᾱ((i+1)/T)/ᾱ(i/T), 0.999)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
         for i in range(num_timesteps)],
        dtype=np.float64,
    )


def named_betas(schedule: str, num_timesteps: int) -> np.ndarray:
    """The 'linear' or 'cosine' schedule."""
    if schedule == "linear":
        return linear_betas(num_timesteps)
    if schedule == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"unknown noise schedule {schedule!r}; choose 'linear' or 'cosine'")


def space_timesteps(num_timesteps: int, chain: str) -> list[int]:
    """Sorted kept steps S of a chain string (guided-diffusion ``respace.space_timesteps``, its arithmetic).

    'ddimN': range(0, T, stride) with exactly N entries. 'a,b,...': T is cut into equal sections (the first
    T mod n one longer) and section i keeps ``a_i`` steps: a float index starts at 0 and grows by the fractional
    stride (size - 1)/(a_i - 1) per step, each step taking Python's round of it. The accumulated sum is what the
    official code rounds (``cur_idx += frac_stride``); rounding ``stride * j`` instead differs in its last bits and
    moves a step for 278 of the counts 1..1000 (e.g. '21' keeps 499, not 500). A section may keep 0 steps.
    """
    if chain.startswith("ddim"):
        desired = _chain_int(chain[4:], chain)
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == desired:
                return list(range(0, num_timesteps, stride))
        raise ValueError(f"chain {chain!r}: no integer stride gives exactly {desired} of {num_timesteps} steps")
    counts = [_chain_int(part, chain) for part in chain.split(",")]
    size_per, extra = divmod(num_timesteps, len(counts))
    kept: set[int] = set()
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count > size:
            raise ValueError(f"chain {chain!r}: section {i} has {size} steps, cannot keep {count}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        index = 0.0
        for _ in range(count):
            kept.add(start + round(index))
            index += stride
        start += size
    if not kept:
        raise ValueError(f"chain {chain!r} keeps no step")
    return sorted(kept)


def _chain_int(text: str, chain: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"chain {chain!r} is not a step count list like '250', '10,10,5' or 'ddim100'")
    return int(text)


def _gather(values: np.ndarray, t: Tensor, like: Tensor) -> Tensor:
    """values[t] as a (N, 1, 1, ...) tensor with ``like``'s dtype and device."""
    out = torch.from_numpy(values).to(device=t.device)[t].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log p(x) of 8-bit data in [-1, 1] under N(mean, e^{2 log_scale}) integrated over each bin (DDPM Eq. 13)."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


@dataclass(frozen=True)
class StepOutput:
    """One reverse step's p(x_{t-1}|x_t): mean, log-variance and the clipped x̂_0."""

    mean: Tensor
    log_variance: Tensor
    pred_xstart: Tensor


class GaussianDiffusion:
    """A (possibly respaced) diffusion process with ε-prediction.

    ``betas``: (K,) float64 of this chain; ``timestep_map``: the original step fed to the model at each index
    (identity for the base process); ``base_timesteps``: T of the process it was respaced from (K for the base).
    """

    def __init__(
        self, betas: np.ndarray, variance_type: VarianceType = "fixed_large", timestep_map: list[int] | None = None,
        base_timesteps: int | None = None,
    ) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-d array in (0, 1]")
        self.betas = betas
        self.variance_type = variance_type
        self.num_timesteps = len(betas)
        self.timestep_map = list(range(self.num_timesteps)) if timestep_map is None else list(timestep_map)
        self.base_timesteps = self.num_timesteps if base_timesteps is None else base_timesteps
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        # DDPM Eq. 7: β̃_t = (1 - ᾱ_{t-1})/(1 - ᾱ_t) β_t and the posterior mean coefficients
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃ is 0 at t = 1; its log is clipped to β̃_2 (guided-diffusion) when K > 1
        first = self.posterior_variance[1] if self.num_timesteps > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(first, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    @classmethod
    def respaced(
        cls, base_betas: np.ndarray, chain: str, variance_type: VarianceType = "fixed_large"
    ) -> GaussianDiffusion:
        """The chain ``chain`` of the base process: β'_j = 1 - ᾱ_{S[j]}/ᾱ_{S[j-1]} (ᾱ' = ᾱ at the kept steps)."""
        kept = space_timesteps(len(base_betas), chain)
        alphas_cumprod = np.cumprod(1.0 - np.asarray(base_betas, dtype=np.float64))
        previous = np.append(1.0, alphas_cumprod[kept][:-1])
        return cls(1.0 - alphas_cumprod[kept] / previous, variance_type, timestep_map=kept,
                   base_timesteps=len(base_betas))

    # forward process ------------------------------------------------------------------------------------------

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε (DDPM Eq. 4); ``t`` are indices of this chain, shape (N,)."""
        noise = torch.randn_like(x_start) if noise is None else noise
        return (_gather(self.sqrt_alphas_cumprod, t, x_start) * x_start
                + _gather(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)

    def q_posterior(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM Eqs. 6-7)."""
        mean = _gather(self.posterior_mean_coef1, t, x_t) * x_start + _gather(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, _gather(self.posterior_variance, t, x_t), _gather(self.posterior_log_variance_clipped, t, x_t)

    def early_stop_stats(self, k: int) -> dict[str, float]:
        """ᾱ, √ᾱ, √(1-ᾱ) and SNR = ᾱ/(1-ᾱ) at the start index k-1 of a k-step early stop, and the effective T'."""
        self._check_k(k)
        abar = float(self.alphas_cumprod[k - 1])
        return {
            "k": k,
            "effective_t_prime": self.timestep_map[k - 1] + 1,
            "alpha_bar": abar,
            "sqrt_alpha_bar": math.sqrt(abar),
            "sqrt_one_minus_alpha_bar": math.sqrt(1.0 - abar),
            "snr": abar / (1.0 - abar),
        }

    def steps_below(self, t_prime: int) -> int:
        """k = number of kept steps with original index < T' (official ``reverse_steps`` for an early stop at T').

        T' may be anything up to the base process's T, also on a chain whose last kept step is below T - 1
        (ddim200 keeps 0..995; T' = 1000 there is the whole chain, k = 200).
        """
        if t_prime > self.base_timesteps:
            raise ValueError(f"early stop T'={t_prime} is beyond the process's T = {self.base_timesteps}")
        k = sum(1 for s in self.timestep_map if s < t_prime)
        if k < 1:
            raise ValueError(
                f"early stop T'={t_prime} keeps no step of this chain (first kept step {self.timestep_map[0]})"
            )
        return k

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.num_timesteps:
            raise ValueError(f"early-stop step count k={k} must be in 1..{self.num_timesteps} (the chain's length)")

    # reverse process ------------------------------------------------------------------------------------------

    def _model_t(self, t: Tensor) -> Tensor:
        return torch.tensor(self.timestep_map, device=t.device, dtype=torch.long)[t]

    def p_mean_variance(
        self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = True, model_kwargs: dict | None = None
    ) -> StepOutput:
        """p_θ(x_{t-1} | x_t): x̂_0 = √(1/ᾱ_t) x_t - √(1/ᾱ_t - 1) ε_θ, clipped to [-1, 1]; mean = posterior mean."""
        output = model(x, self._model_t(t), **(model_kwargs or {}))
        channels = x.shape[1]
        if self.variance_type == "learned_range":
            if output.shape[1] != 2 * channels:
                raise ValueError(f"learned-range variance needs {2 * channels} model output channels, got "
                                 f"{output.shape[1]} (set learn_sigma to match the checkpoint)")
            eps, v = output.split(channels, dim=1)
            frac = (v + 1) / 2  # IDDPM Eq. 15: log Σ = v log β_t + (1 - v) log β̃_t, v mapped from [-1, 1]
            log_variance = (frac * _gather(np.log(self.betas), t, x)
                            + (1 - frac) * _gather(self.posterior_log_variance_clipped, t, x))
        else:
            if output.shape[1] != channels:
                raise ValueError(f"fixed variance needs {channels} model output channels, got {output.shape[1]} "
                                 "(a learn_sigma checkpoint needs variance_type learned_range)")
            eps = output
            if self.variance_type == "fixed_large":  # β_t, with β̃_2 in place of β_1 (guided-diffusion)
                variances = np.append(self.posterior_variance[1] if self.num_timesteps > 1 else self.betas[0],
                                      self.betas[1:])
            else:
                variances = np.append(self.posterior_variance[1] if self.num_timesteps > 1 else self.betas[0],
                                      self.posterior_variance[1:])
            log_variance = _gather(np.log(variances), t, x).expand_as(x)
        pred_xstart = self.predict_xstart(x, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior(pred_xstart, x, t)
        return StepOutput(mean=mean, log_variance=log_variance, pred_xstart=pred_xstart)

    def predict_xstart(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x̂_0 = √(1/ᾱ_t) x_t - √(1/ᾱ_t - 1) ε (DDPM Eq. 4 inverted)."""
        return (_gather(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - _gather(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def predict_eps(self, x_t: Tensor, t: Tensor, pred_xstart: Tensor) -> Tensor:
        """ε̂ implied by x_t and x̂_0."""
        return ((_gather(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart)
                / _gather(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    def p_sample(self, model: Model, x: Tensor, t: Tensor, noise: Tensor, clip_denoised: bool = True,
                 model_kwargs: dict | None = None, cond_fn: CondFn | None = None) -> tuple[Tensor, Tensor]:
        """One ancestral step x_{t-1} = mean + exp(½ log Σ) z, without noise at index 0. Returns (x_{t-1}, x̂_0).

        ``cond_fn(x, t_original, **model_kwargs)`` = s·∇_x log p_φ(y | x_t) shifts the mean by Σ·∇ (ADM Alg. 1).
        """
        out = self.p_mean_variance(model, x, t, clip_denoised, model_kwargs)
        mean = out.mean
        if cond_fn is not None:
            mean = mean + torch.exp(out.log_variance) * cond_fn(x, self._model_t(t), **(model_kwargs or {}))
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return mean + nonzero * torch.exp(0.5 * out.log_variance) * noise, out.pred_xstart

    def ddim_sample(self, model: Model, x: Tensor, t: Tensor, noise: Tensor, eta: float = 0.0,
                    clip_denoised: bool = True, model_kwargs: dict | None = None,
                    cond_fn: CondFn | None = None) -> tuple[Tensor, Tensor]:
        """DDIM Eq. 12: x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1-ᾱ_{t-1}-σ²) ε̂ + σ z.

        σ = η √((1-ᾱ_{t-1})/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_{t-1}) (DDIM Eq. 16); at index 0 (ᾱ_{t-1} = 1) this returns x̂_0.
        With ``cond_fn`` the score is shifted: ε̂ ← ε̂ - √(1-ᾱ_t)·s∇ log p(y|x_t) (ADM Alg. 2).
        """
        out = self.p_mean_variance(model, x, t, clip_denoised, model_kwargs)
        pred_xstart = out.pred_xstart
        eps = self.predict_eps(x, t, pred_xstart)
        abar, abar_prev = _gather(self.alphas_cumprod, t, x), _gather(self.alphas_cumprod_prev, t, x)
        if cond_fn is not None:
            eps = eps - torch.sqrt(1 - abar) * cond_fn(x, self._model_t(t), **(model_kwargs or {}))
            pred_xstart = self.predict_xstart(x, t, eps)
        sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar)) * torch.sqrt(1 - abar / abar_prev)
        mean = pred_xstart * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma**2) * eps
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return mean + nonzero * sigma * noise, pred_xstart

    def sample_from(
        self,
        model: Model,
        x_start_step: Tensor,
        k: int,
        sampler: Literal["ddpm", "ddim"] = "ddpm",
        eta: float = 0.0,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
        cond_fn: CondFn | None = None,
    ) -> Tensor:
        """Run reverse indices k-1, ..., 0 from ``x_start_step`` = x at index k-1 (exactly k model calls)."""
        self._check_k(k)
        x = x_start_step
        for j in reversed(range(k)):
            t = torch.full((x.shape[0],), j, device=x.device, dtype=torch.long)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if sampler == "ddpm":
                x, _ = self.p_sample(model, x, t, noise, clip_denoised, model_kwargs, cond_fn)
            elif sampler == "ddim":
                x, _ = self.ddim_sample(model, x, t, noise, eta, clip_denoised, model_kwargs, cond_fn)
            else:
                raise ValueError(f"unknown sampler {sampler!r}; choose 'ddpm' or 'ddim'")
        return x

    def sample(self, model: Model, shape: tuple[int, ...], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", **kwargs) -> Tensor:
        """The full chain from x ~ N(0, I) (the 'start from scratch' baseline): NFE = len(chain)."""
        noise = torch.randn(shape, generator=generator, device=device)
        return self.sample_from(model, noise, self.num_timesteps, generator=generator, **kwargs)

    def sample_early_stop(self, model: Model, x_prior: Tensor, k: int, generator: torch.Generator | None = None,
                          **kwargs) -> Tensor:
        """ES-DDPM: x_{T'} = q_sample(x_prior, k-1), then the last k reverse steps (NFE = k; DDPM or DDIM)."""
        self._check_k(k)
        noise = torch.randn(x_prior.shape, generator=generator, device=x_prior.device, dtype=x_prior.dtype)
        t = torch.full((x_prior.shape[0],), k - 1, device=x_prior.device, dtype=torch.long)
        return self.sample_from(model, self.q_sample(x_prior, t, noise), k, generator=generator, **kwargs)

    # training ---------------------------------------------------------------------------------------------------

    def training_losses(self, model: Model, x_start: Tensor, t: Tensor, noise: Tensor | None = None,
                        model_kwargs: dict | None = None) -> dict[str, Tensor]:
        """Per-sample losses: 'mse' (L_simple, mean over pixels), 'vb' (learned sigma only, bits/dim) and 'loss'.

        With learned-range variance the VLB term sees a stop-gradient ε (IDDPM Sec. 3.1, L_hybrid; λ enters through
        the single-t estimate, as guided-diffusion's ``loss_type=MSE``).
        """
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise)
        output = model(x_t, self._model_t(t), **(model_kwargs or {}))
        channels = x_start.shape[1]
        terms: dict[str, Tensor] = {}
        if self.variance_type == "learned_range":
            eps, v = output.split(channels, dim=1)
            frozen = torch.cat([eps.detach(), v], dim=1)
            terms["vb"] = self._vb_bits_per_dim(lambda *_a, **_k: frozen, x_start, x_t, t)
        else:
            eps = output
        terms["mse"] = ((noise - eps) ** 2).mean(dim=tuple(range(1, x_start.ndim)))
        terms["loss"] = terms["mse"] + terms.get("vb", 0.0)
        return terms

    def _vb_bits_per_dim(self, model: Model, x_start: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """L_{t-1} = KL(q(x_{t-1}|x_t,x_0) ‖ p_θ) for t > 0 and -log p(x_0|x_1) (discretised) at t = 0, in bits/dim."""
        true_mean, _, true_log_var = self.q_posterior(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=False)
        dims = tuple(range(1, x_start.ndim))
        kl = normal_kl(true_mean, true_log_var, out.mean, out.log_variance).mean(dim=dims) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, out.mean, 0.5 * out.log_variance)
        nll = nll.mean(dim=dims) / math.log(2.0)
        return torch.where(t == 0, nll, kl)
