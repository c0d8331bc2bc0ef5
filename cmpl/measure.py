"""The tiny preset's mechanism measurements (spec cmpl.md §8.2): complementarity of F and A on the unlabelled pool.

For every unlabelled clip (the evaluation view: no augmentation) each network's prediction is
*confidently right* when its softmax maximum is >= tau and its arg-max is the true class:

- ``complementarity``: the share of clips where exactly one of F and A is confidently right (what cross labels can
  add that self labels cannot);
- ``aux_right_where_primary_wrong``: accuracy of A's confident labels on the clips F gets wrong (A's labels are what
  teaches F there);
- each network's confident rate and the accuracy of its confident labels.
"""

from __future__ import annotations

import torch
from torch import nn

from cmpl.augment import eval_view
from cmpl.config import CMPLConfig


@torch.no_grad()
def predictions(cfg: CMPLConfig, net: nn.Module, name: str, source: torch.utils.data.Dataset,
                batch: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(confidence, arg-max, true label) of ``net`` on every clip of ``source`` (eval mode, centre view)."""
    view, step = eval_view(cfg.augment), cfg.primary_step()
    was_training = net.training
    net.eval()
    conf, pred, truth = [], [], []
    for start in range(0, len(source), batch):
        items = [source[i] for i in range(start, min(start + batch, len(source)))]
        clips = torch.stack([view(frames) for frames, _ in items])
        probs = net(clips[:, :, ::step] if name == "primary" else clips).softmax(dim=1)
        c, p = probs.max(dim=1)
        conf.append(c)
        pred.append(p)
        truth += [label for _, label in items]
    net.train(was_training)
    return torch.cat(conf), torch.cat(pred), torch.tensor(truth)


def complementarity(cfg: CMPLConfig, primary: nn.Module, aux: nn.Module, source: torch.utils.data.Dataset
                    ) -> dict[str, float]:
    """See the module docstring; ``tau`` is ``cfg.ssl.tau``."""
    fc, fp, truth = predictions(cfg, primary, "primary", source)
    ac, ap, _ = predictions(cfg, aux, "aux", source)
    f_conf, a_conf = fc >= cfg.ssl.tau, ac >= cfg.ssl.tau
    f_right, a_right = f_conf & (fp == truth), a_conf & (ap == truth)
    primary_wrong = fp != truth
    a_labels_there = a_conf & primary_wrong

    def rate(mask: torch.Tensor, of: torch.Tensor) -> float:
        return float(mask[of].float().mean()) if of.any() else float("nan")

    return {
        "complementarity": float((f_right ^ a_right).float().mean()),
        "aux_right_where_primary_wrong": rate(ap == truth, a_labels_there),
        "primary_confident": float(f_conf.float().mean()),
        "aux_confident": float(a_conf.float().mean()),
        "primary_label_accuracy": rate(fp == truth, f_conf),
        "aux_label_accuracy": rate(ap == truth, a_conf),
    }
