"""Adaptive augmentation probability (ADA; Karras et al. 2020, "Training Generative Adversarial Networks with Limited
Data", Sec. 3; NVlabs/stylegan2-ada-pytorch ``training/training_loop.py``; spec stylegan2_base.md §2.2).

The overfitting heuristic r_t = E[sign(D(x_real))] is collected from every real-image pass of D (Dmain and Dreg).
Every ``interval`` iterations p moves by a fixed step towards keeping r_t at ``target``:

    p <- max(0, p + sign(r_t - target) * batch_size * interval / (ada_kimg * 1000))

so p can travel 0 -> 1 in ``ada_kimg`` thousand images. As in the official code p is NOT clamped at 1 (issue
NVlabs/stylegan2-ada-pytorch#175 reports p = 21.8); probabilities >= 1 simply saturate in the pipe.

Fixed-p augmentation (official ``--aug=fixed --p=P``) is an ``augment_pipe(preset, p=P)`` without this controller.
"""

from __future__ import annotations

import torch
from torch import Tensor

from common.dist import all_reduce_sum
from common.stylegan2.augment import AugmentPipe


class AdaptiveP:
    """Controller of ``pipe.p``; the training loop calls :meth:`accumulate` from the loss and :meth:`step` once per
    iteration.

    batch_size: the global batch (all ranks) of one iteration, as the official ``batch_size``.
    ada_kimg: thousands of images for p to move by 1 (official 500; 100 when resuming from a pretrained pickle).
    """

    def __init__(
        self,
        pipe: AugmentPipe,
        target: float = 0.6,
        interval: int = 4,
        ada_kimg: float = 500,
        *,
        batch_size: int,
    ) -> None:
        if interval < 1 or ada_kimg <= 0 or batch_size < 1:
            raise ValueError(
                f"AdaptiveP needs interval >= 1, ada_kimg > 0 and batch_size >= 1 "
                f"(got interval={interval}, ada_kimg={ada_kimg}, batch_size={batch_size})"
            )
        self.pipe = pipe
        self.target, self.interval, self.ada_kimg, self.batch_size = target, interval, ada_kimg, batch_size
        self._sign_sum: Tensor | None = None  # on the logits' device, so accumulate() never synchronises
        self._count: Tensor | None = None

    @property
    def adjust_step(self) -> float:
        """The size of one update of p: batch_size * interval / (ada_kimg * 1000)."""
        return self.batch_size * self.interval / (self.ada_kimg * 1000)

    def accumulate(self, real_logits: Tensor) -> None:
        """Add the signs of D's logits on real images (any shape; every element counts once)."""
        logits = real_logits.detach()
        signs = logits.sign().sum().double()
        count = torch.tensor(float(logits.numel()), dtype=torch.float64, device=logits.device)
        if self._sign_sum is None:
            self._sign_sum, self._count = signs, count
        else:
            self._sign_sum, self._count = self._sign_sum + signs, self._count + count

    def step(self, batch_idx: int) -> float | None:
        """Update p when ``batch_idx`` (iterations completed, counted after the increment as the official loop does)
        is a multiple of ``interval``; returns r_t over all ranks then, else None.

        The accumulators are reset at every update. An update with nothing accumulated on any rank leaves p alone
        and returns None (the official code would turn p into NaN).
        """
        if batch_idx % self.interval != 0:
            return None
        device = self.pipe.p.device
        local = torch.zeros(2, dtype=torch.float64, device=device)
        if self._sign_sum is not None:
            local = torch.stack([self._sign_sum, self._count]).to(device)
        self._sign_sum = self._count = None
        sign_sum, count = all_reduce_sum(local).tolist()  # every rank takes part, accumulated or not
        if count == 0:
            return None
        r_t = sign_sum / count
        direction = (r_t > self.target) - (r_t < self.target)
        with torch.no_grad():
            self.pipe.p.copy_((self.pipe.p + direction * self.adjust_step).clamp(min=0))
        return r_t

    def state_dict(self) -> dict[str, float]:
        """The accumulators since the last update (``p`` itself is the pipe's buffer, saved with the pipe)."""
        if self._sign_sum is None:
            return {"sign_sum": 0.0, "count": 0.0}
        return {"sign_sum": float(self._sign_sum), "count": float(self._count)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore the accumulators written by :meth:`state_dict`."""
        device = self.pipe.p.device
        if float(state["count"]) == 0:
            self._sign_sum = self._count = None
            return
        self._sign_sum = torch.tensor(float(state["sign_sum"]), dtype=torch.float64, device=device)
        self._count = torch.tensor(float(state["count"]), dtype=torch.float64, device=device)
