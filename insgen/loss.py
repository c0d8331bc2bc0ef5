"""StyleGAN2-ADA loss plus InsGen's three instance-discrimination terms (paper Sec. 3.2-3.3; spec insgen.md §2).

    Gmain  L_G = softplus(-D(A(G(z)))) + w_g * C_G^f
    Dmain  L_D = softplus(D(A(G(z)))) + softplus(-D(A(x))) + w_r * C_D^r + w_f * C_D^f

with h(.) = D's last-block features, h_ema(.) those of D_ema, A(.) a fresh draw of the view augmentation and

    C_D^r = InfoNCE(phi_r(h(A(x))),    phi'_r(h_ema(A(x))),          Q_r)   enqueue phi'_r(h_ema(A(x)))
    C_D^f = InfoNCE(phi_f(h(A(G(z)))), phi'_f(h_ema(A(G(z + d)))),   Q_f)   enqueue phi'_f(h(A(G(z)))), d ~ 0.15 N(0, I)
    C_G^f = InfoNCE(phi_f(h(A(G(z)))), phi'_f(h_ema(A(G(z)))),       Q_f)   gradient to G only, nothing enqueued

Call graph as the official ``training/contrastive_loss.py``: one Dmain call runs D 4 times, D_ema twice and G twice
(the perturbed fakes under no_grad, with a fresh style-mixing draw); one Gmain call runs D twice and D_ema once. The
heads are zeroed before and stepped right after the Dmain backward, i.e. once per accumulation round; under DDP
their gradients are averaged over ranks first (the official code wraps them in DDP).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from common import dist
from common.stylegan2.loss import StyleGAN2Loss
from insgen.contrastive import HEAD_FEATURES, InstanceDiscriminationHead

LATENT_PERTURBATION_STD = 0.15  # sigma_z, hard-coded in the official contrastive_loss.py


class InsGenLoss(StyleGAN2Loss):
    """:class:`StyleGAN2Loss` with C_D^r, C_D^f (Dmain) and C_G^f (Gmain).

    D_ema: the momentum copy of D (unwrapped); real_head / fake_head: phi_r (official DHead) and phi_f (GHead);
    real_head_opt / fake_head_opt: their Adam optimizers; view_augment: the pipe drawing the two views (official: the
    adversarial ADA pipe). ``weight_fake_on_g = 0`` is the official ``--no_cl_on_g``.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        *,
        D_ema: nn.Module,
        real_head: InstanceDiscriminationHead,
        fake_head: InstanceDiscriminationHead,
        real_head_opt: torch.optim.Optimizer,
        fake_head_opt: torch.optim.Optimizer,
        view_augment: nn.Module,
        weight_real: float = 1.0,
        weight_fake: float = 1.0,
        weight_fake_on_g: float = 0.1,
        latent_perturbation: float = LATENT_PERTURBATION_STD,
        **kwargs,
    ) -> None:
        super().__init__(G, D, **kwargs)
        self.D_ema = D_ema
        self.real_head, self.fake_head = real_head, fake_head
        self.real_head_opt, self.fake_head_opt = real_head_opt, fake_head_opt
        self.view_augment = view_augment
        self.weight_real, self.weight_fake, self.weight_fake_on_g = weight_real, weight_fake, weight_fake_on_g
        self.latent_perturbation = latent_perturbation

    def run_cl(
        self,
        img: Tensor,
        c: Tensor,
        head: InstanceDiscriminationHead,
        key_img: Tensor | None = None,
        loss_only: bool = False,
        enqueue_query: bool = False,
    ) -> Tensor:
        """InfoNCE between D's features of A(img) (query) and D_ema's of A(key_img or img) (key)."""
        view_q = self.view_augment(img)
        view_k = self.view_augment(img if key_img is None else key_img)
        _, query_feats = self.D(view_q, c, return_features=[HEAD_FEATURES])
        with torch.no_grad():
            _, key_feats = self.D_ema(view_k, c, return_features=[HEAD_FEATURES])
        return head(query_feats[HEAD_FEATURES], key_feats[HEAD_FEATURES], loss_only=loss_only,
                    enqueue_query=enqueue_query)

    def g_main(self, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        gen_img, _ = self.run_G(gen_z, gen_c)
        loss = self.g_adversarial(gen_img, gen_c)
        if self.weight_fake_on_g == 0:
            return loss
        self.fake_head.mlp.requires_grad_(False)  # C_G^f trains G only (D is frozen in this phase anyway)
        cl_fake_on_g = self.run_cl(gen_img, gen_c, self.fake_head, loss_only=True)
        self.fake_head.mlp.requires_grad_(True)
        self.stats["Loss/G_cl_on_g"] = cl_fake_on_g.detach()
        return loss + self.weight_fake_on_g * cl_fake_on_g

    def d_main(self, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        with torch.no_grad():
            gen_img, _ = self.run_G(gen_z, gen_c)
        loss = self.d_adversarial(real_img, real_c, gen_img, gen_c)
        cl_real = self.run_cl(real_img.detach(), real_c, self.real_head)
        with torch.no_grad():
            delta_z = torch.randn_like(gen_z) * self.latent_perturbation
            perturbed_img, _ = self.run_G(gen_z + delta_z, gen_c)  # a fresh style-mixing draw, as the official
        cl_fake = self.run_cl(gen_img, gen_c, self.fake_head, key_img=perturbed_img, enqueue_query=True)
        self.stats["Loss/D_cl"] = cl_real.detach()
        self.stats["Loss/G_cl"] = cl_fake.detach()
        return loss + self.weight_real * cl_real + self.weight_fake * cl_fake

    def accumulate_gradients(
        self, phase: str, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor, gain: float
    ) -> None:
        """As the base class; in Dmain/Dboth the heads are zeroed before and stepped after the backward."""
        updates_heads = phase in ("Dmain", "Dboth")
        if updates_heads:
            self.real_head_opt.zero_grad(set_to_none=True)
            self.fake_head_opt.zero_grad(set_to_none=True)
        super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, gain)
        if updates_heads:
            for head, opt in ((self.real_head, self.real_head_opt), (self.fake_head, self.fake_head_opt)):
                _average_grads_over_ranks(head.mlp)
                opt.step()


def _average_grads_over_ranks(module: nn.Module) -> None:
    if not dist.is_distributed():
        return
    for p in module.parameters():
        if p.grad is not None:
            p.grad.copy_(dist.all_reduce_mean(p.grad))
