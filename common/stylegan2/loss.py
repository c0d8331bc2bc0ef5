"""StyleGAN2-ADA loss with the four phases of lazy regularisation (NVlabs ``training/loss.py``, spec §2.1).

    Gmain  L_G  = mean softplus(-D(A(G(z, c)), c))                      (non-saturating logistic)
    Greg   L_pl = w_pl * (|J_w^T y| - a)^2,  y ~ N(0, I) / sqrt(H W),  a <- lerp(a, mean |J_w^T y|, 0.01)
    Dmain  L_D  = mean softplus(D(A(G(z, c)))) + mean softplus(-D(A(x)))
    Dreg   L_R1 = gamma / 2 * |d sum D(A(x)) / dx|^2                   (x un-augmented; grads flow through A)

Regularisation phases are multiplied by their interval (``gain``) by the caller. Paper methods extend the loss by
subclassing: override :meth:`g_main`, :meth:`g_reg`, :meth:`d_main` or :meth:`d_reg`, call ``super()`` (or
:meth:`g_adversarial` / :meth:`d_adversarial` when the added terms need the same fakes) and add terms to the returned
scalar; put detached scalars to log into ``self.stats``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from common.stylegan2.ada import AdaptiveP


class StyleGAN2Loss:
    """The loss object the shared loop drives phase by phase. ``G``/``D`` may be DDP-wrapped modules."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        augment_pipe: nn.Module | None = None,
        ada: AdaptiveP | None = None,
        r1_gamma: float = 10.0,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
    ) -> None:
        self.G, self.D = G, D
        self.augment_pipe, self.ada = augment_pipe, ada
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.pl_mean = torch.zeros([])
        self.stats: dict[str, Tensor] = {}  # detached scalars of the last phase calls; no device sync here

    @property
    def _G(self) -> nn.Module:
        return getattr(self.G, "module", self.G)

    def run_G(self, z: Tensor, c: Tensor, **synthesis_kwargs: Any) -> tuple[Any, Tensor]:
        """Images and the ws they came from; style mixing with one cutoff per batch (prob ``style_mixing_prob``).
        ``synthesis_kwargs`` go to ``G.synthesis`` (EqGAN-SA: ``return_heatmap=True`` returns (images, heatmaps))."""
        G = self._G
        ws = G.mapping(z, c)
        if self.style_mixing_prob > 0:
            cutoff = int(torch.randint(1, ws.shape[1], []))
            if float(torch.rand([])) < self.style_mixing_prob:
                mixed = G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
                ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return G.synthesis(ws, **synthesis_kwargs), ws

    def run_D(self, img: Tensor, c: Tensor) -> Tensor:
        """Logits of D on the augmented images (every image D sees passes through the augment pipe)."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def g_main(self, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        gen_img, _ = self.run_G(gen_z, gen_c)
        return self.g_adversarial(gen_img, gen_c)

    def g_adversarial(self, gen_img: Tensor, gen_c: Tensor) -> Tensor:
        """The non-saturating G loss on given fakes (split out so subclasses can reuse the fakes)."""
        gen_logits = self.run_D(gen_img, gen_c)
        loss = F.softplus(-gen_logits).mean()
        self.stats["Loss/G/loss"] = loss.detach()
        return loss

    def g_reg(self, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        if self.pl_weight == 0:
            return torch.zeros([], device=gen_z.device)
        batch = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch], gen_c[:batch])
        pl_noise = torch.randn_like(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])
        (pl_grads,) = torch.autograd.grad((gen_img * pl_noise).sum(), gen_ws, create_graph=True)
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.to(pl_lengths.device)
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)  # not detached here, as the official loss
        self.pl_mean = pl_mean.detach()
        penalty = (pl_lengths - pl_mean).square()
        self.stats["Loss/pl_penalty"] = penalty.detach().mean()
        # the zero term keeps every G parameter in the graph (DDP), as the official loss
        return (gen_img[:, 0, 0, 0] * 0 + penalty * self.pl_weight).mean()

    def d_main(self, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        with torch.no_grad():  # G is frozen in this phase; w_avg still tracks, as in the official loss
            gen_img, _ = self.run_G(gen_z, gen_c)
        return self.d_adversarial(real_img, real_c, gen_img, gen_c)

    def d_adversarial(self, real_img: Tensor, real_c: Tensor, gen_img: Tensor, gen_c: Tensor) -> Tensor:
        """The logistic D loss on given fakes and reals (split out so subclasses can reuse the fakes)."""
        gen_logits = self.run_D(gen_img, gen_c)
        real_logits = self.run_D(real_img.detach(), real_c)
        self._report_real(real_logits)
        loss_gen = F.softplus(gen_logits).mean()
        loss_real = F.softplus(-real_logits).mean()
        self.stats["Loss/D/loss"] = (loss_gen + loss_real).detach()
        self.stats["Loss/scores/real"] = real_logits.detach().mean()
        self.stats["Loss/scores/fake"] = gen_logits.detach().mean()
        return loss_gen + loss_real

    def d_reg(self, real_img: Tensor, real_c: Tensor) -> Tensor:
        if self.r1_gamma == 0:
            return torch.zeros([], device=real_img.device)
        real_img = real_img.detach().requires_grad_(True)
        real_logits = self.run_D(real_img, real_c)
        self._report_real(real_logits)
        (r1_grads,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)
        penalty = r1_grads.square().sum(dim=[1, 2, 3])
        self.stats["Loss/r1_penalty"] = penalty.detach().mean()
        return (real_logits * 0 + penalty[:, None] * (self.r1_gamma / 2)).mean()

    def _report_real(self, real_logits: Tensor) -> None:
        """ADA's overfitting heuristic r_t = E[sign(D(x_real))] collects from Dmain and Dreg (official)."""
        if self.ada is not None:
            self.ada.accumulate(real_logits.detach())
        self.stats["Loss/signs/real"] = real_logits.detach().sign().mean()

    def accumulate_gradients(
        self, phase: str, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor, gain: float
    ) -> None:
        """Backward the loss of one phase ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'), scaled by gain."""
        terms = {
            "Gmain": lambda: self.g_main(gen_z, gen_c),
            "Greg": lambda: self.g_reg(gen_z, gen_c),
            "Gboth": lambda: self.g_main(gen_z, gen_c) + self.g_reg(gen_z, gen_c),
            "Dmain": lambda: self.d_main(real_img, real_c, gen_z, gen_c),
            "Dreg": lambda: self.d_reg(real_img, real_c),
            "Dboth": lambda: self.d_main(real_img, real_c, gen_z, gen_c) + self.d_reg(real_img, real_c),
        }
        if phase not in terms:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(terms)}")
        loss = terms[phase]()
        if loss.requires_grad:
            loss.mul(gain).backward()
