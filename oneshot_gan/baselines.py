"""The regulariser baseline: EWC (Li, Zhang, Liu, Yang, Shechtman, Wang; "Few-shot Image Generation with Elastic
Weight Consolidation", NeurIPS 2020), fine-tuning G with a Fisher-weighted pull towards the source weights:

    L_G = L_adv + lambda * sum_i F_i (theta_i - theta_S,i)^2,    F_i = E[(d L(theta_S) / d theta_i)^2]

with L the generator's adversarial loss softplus(-D(G(z))) under the SOURCE G and D (the empirical Fisher of the
discriminator's log-likelihood of the source's samples, Li et al. Sec. 3). TGAN (all of G and D fine-tuned) and
FreezeD (``D.freeze_layers``) need no code beyond the shared loop's trainable sets; MineGAN and CDC are not built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.stylegan2.loss import StyleGAN2Loss


class EWCAnchor(nn.Module):
    """theta_S and F for every parameter of G, as buffers (saved in snapshots, so a resumed run keeps them)."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        for i, p in enumerate(G.parameters()):
            self.register_buffer(f"source{i}", torch.zeros_like(p))
            self.register_buffer(f"fisher{i}", torch.zeros_like(p))

    @torch.no_grad()
    def estimate(self, G: nn.Module, D: nn.Module, batches: int, batch: int, seed: int = 0) -> None:
        """theta_S <- G's weights; F <- the mean over ``batches`` batches of squared gradients of the G loss. Draws
        its latents from its own generator with constant noise and leaves ``w_avg`` alone (the training RNG and the
        source G do not change)."""
        gen = torch.Generator().manual_seed(seed)
        params = list(G.parameters())
        fisher = [torch.zeros_like(p) for p in params]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
        device = params[0].device
        for _ in range(batches):
            z = torch.randn([batch, G.z_dim], generator=gen).to(device)
            c = torch.zeros([batch, G.c_dim], device=device)
            with torch.enable_grad():
                img = G.synthesis(G.mapping(z, c, skip_w_avg_update=True), noise_mode="const")
                loss = F.softplus(-D(img, c)).mean()
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            for f, g in zip(fisher, grads):
                if g is not None:
                    f.add_(g.square() / batches)
        for i, (p, f, flag) in enumerate(zip(params, fisher, flags)):
            p.requires_grad_(flag)
            getattr(self, f"source{i}").copy_(p)
            getattr(self, f"fisher{i}").copy_(f)

    def penalty(self, G: nn.Module) -> Tensor:
        """sum_i F_i (theta_i - theta_S,i)^2 over every parameter of G."""
        terms = [(getattr(self, f"fisher{i}") * (p - getattr(self, f"source{i}")).square()).sum()
                 for i, p in enumerate(G.parameters())]
        return torch.stack(terms).sum()


class EWCLoss(StyleGAN2Loss):
    """StyleGAN2's loss with the EWC penalty added to Gmain (the G phase; the Fisher anchors G only)."""

    def __init__(self, G: nn.Module, D: nn.Module, anchor: EWCAnchor, ewc_lambda: float, **kwargs) -> None:
        super().__init__(G, D, **kwargs)
        self.anchor, self.ewc_lambda = anchor, ewc_lambda

    def g_main(self, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        penalty = self.anchor.penalty(self._G)
        self.stats["Loss/G/ewc"] = penalty.detach()
        return super().g_main(gen_z, gen_c) + self.ewc_lambda * penalty
