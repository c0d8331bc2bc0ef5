"""Cross-model pseudo-labelling (CMPL, Xu et al. CVPR 2022, Fig. 3; spec cmpl.md §2.1) and its FixMatch baseline.

On an unlabelled clip u, each network labels the *other* one's strongly augmented view with its own confident
prediction on the weak view (stop-gradient on the labeller):

    q^F = SG(softmax F(alpha(u))),  q^A = SG(softmax A(alpha(u))),  yhat = argmax q
    L_u = 1 / (mu B) sum_b [ 1(max q^A_b >= tau) H(yhat^A_b, F(S(u_b))) + 1(max q^F_b >= tau) H(yhat^F_b, A(S(u_b))) ]

normalised by the whole unlabelled batch mu B (FixMatch's convention), not by the confident clips. FixMatch is the
same with F labelling itself: 1(max q^F >= tau) H(yhat^F, F(S(u))). The total is L_s + lambda L_u with the
supervised cross-entropy of both networks on the weak labelled views (``supervised_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class PseudoLabels:
    """One labeller's hard labels on the weak views: ``labels`` (N,) argmax, ``mask`` (N,) float confidence >= tau."""

    labels: Tensor
    mask: Tensor

    @classmethod
    def from_logits(cls, weak_logits: Tensor, tau: float) -> PseudoLabels:
        """Stop-gradient, softmax, arg-max and the confidence mask (FixMatch's rule)."""
        probs = torch.softmax(weak_logits.detach(), dim=1)
        confidence, labels = probs.max(dim=1)
        return cls(labels, (confidence >= tau).float())

    def loss(self, strong_logits: Tensor) -> Tensor:
        """sum_b mask_b H(label_b, strong_logits_b) / N (every clip of the batch in the denominator)."""
        return (F.cross_entropy(strong_logits, self.labels, reduction="none") * self.mask).sum() / len(self.mask)


def supervised_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """H(y, F(alpha(x))), averaged over the labelled batch."""
    return F.cross_entropy(logits, labels)


def cmpl_unsupervised_loss(primary_weak: Tensor, aux_weak: Tensor, primary_strong: Tensor, aux_strong: Tensor,
                           tau: float) -> tuple[Tensor, PseudoLabels, PseudoLabels]:
    """L_u of CMPL: A's confident labels teach F's strong view, F's teach A's. Returns (L_u, F's labels, A's)."""
    from_primary = PseudoLabels.from_logits(primary_weak, tau)
    from_aux = PseudoLabels.from_logits(aux_weak, tau)
    return from_aux.loss(primary_strong) + from_primary.loss(aux_strong), from_primary, from_aux


def fixmatch_unsupervised_loss(weak: Tensor, strong: Tensor, tau: float) -> tuple[Tensor, PseudoLabels]:
    """L_u of FixMatch: a network's own confident labels on the weak view teach its strong view."""
    labels = PseudoLabels.from_logits(weak, tau)
    return labels.loss(strong), labels
