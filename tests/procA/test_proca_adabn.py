"""The AdaBN control arm of the tiny ablation: every BN layer's statistics equal a direct computation on the target
batch, and nothing else in the model changes."""

from __future__ import annotations

import copy

import torch
from torch import nn

from common.config import load_config
from procA.config import ProCAConfig
from procA.reproduce import CONFIGS, adabn
from procA.training import build_model


def test_adabn_statistics_equal_the_target_batch_statistics():
    cfg = load_config(ProCAConfig, CONFIGS / "tiny.yaml")
    torch.manual_seed(0)
    model = build_model(cfg, "", torch.device("cpu"))
    before = copy.deepcopy(model.state_dict())
    images = torch.randn(6, 3, 32, 32) * 2 + 0.5
    inputs: dict[str, torch.Tensor] = {}
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    hooks = [m.register_forward_pre_hook(lambda _, args, name=name: inputs.__setitem__(name, args[0].detach()))
             for name, m in norms.items()]
    adapted = adabn(model, images)
    for hook in hooks:
        hook.remove()
    assert len(norms) > 10 and set(inputs) == set(norms) and not adapted.training
    for name, norm in norms.items():
        x = inputs[name].double()
        torch.testing.assert_close(norm.running_mean.double(), x.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var.double(), x.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4,
                                   atol=1e-6)
    after = adapted.state_dict()
    for key, value in before.items():
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(value, after[key]), key  # weights untouched: no training
