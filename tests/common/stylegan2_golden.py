"""Reference outputs of the StyleGAN2 networks, written once by the code before the extension hooks existed.

``python tests/common/stylegan2_golden.py`` rewrites ``stylegan2_golden.pt``; ``test_stylegan2_hooks.py`` compares
today's networks with it: with every hook unused, outputs, gradients and ``state_dict`` keys must not move.
The file was written at commit 1d2b332 (before the hooks); rewrite it only when a network change is intended.
"""

from __future__ import annotations

from pathlib import Path

import torch

from common.stylegan2.networks import Discriminator, Generator

GOLDEN = Path(__file__).with_name("stylegan2_golden.pt")

G_CONFIGS = {
    "g_skip": dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                   synthesis_kwargs={"channel_base": 256, "channel_max": 16}),
    "g_cond_resnet": dict(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=1,
                          synthesis_kwargs={"channel_base": 64, "channel_max": 8, "architecture": "resnet"}),
    "g_orig_clamp": dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                         synthesis_kwargs={"channel_base": 64, "channel_max": 8, "architecture": "orig",
                                           "conv_clamp": 0.5}),
}
D_CONFIGS = {
    "d_resnet": dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
                     epilogue_kwargs={"mbstd_group_size": 2}),
    "d_cond_skip": dict(c_dim=3, img_resolution=8, img_channels=1, architecture="skip", channel_base=64,
                        channel_max=8, epilogue_kwargs={"mbstd_group_size": 4}),
    "d_orig_frozen": dict(c_dim=0, img_resolution=16, img_channels=3, architecture="orig", channel_base=256,
                          channel_max=16, conv_clamp=0.5, block_kwargs={"freeze_layers": 3},
                          epilogue_kwargs={"mbstd_group_size": 4, "mbstd_num_channels": 2}),
}


def _inputs(seed: int, n: int, z_dim: int, c_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([n, z_dim], generator=g)
    c = torch.eye(c_dim)[torch.randint(c_dim, [n], generator=g)] if c_dim else torch.zeros([n, 0])
    return z, c


def compute() -> dict[str, object]:
    """Outputs, gradients and key lists of every config above, from fixed seeds."""
    out: dict[str, object] = {}
    for name, kwargs in G_CONFIGS.items():
        torch.manual_seed(1)
        G = Generator(**kwargs)
        z, c = _inputs(2, 4, kwargs["z_dim"], kwargs["c_dim"])
        out[f"{name}.keys"] = list(G.state_dict())
        G.eval()
        with torch.no_grad():
            out[f"{name}.const"] = G(z, c, noise_mode="const")
            out[f"{name}.trunc"] = G(z, c, truncation_psi=0.7, truncation_cutoff=2, noise_mode="const")
        G.train()
        torch.manual_seed(3)
        img = G(z, c)  # random noise, unfused modulation, w_avg tracking
        out[f"{name}.train"] = img.detach()
        out[f"{name}.w_avg"] = G.mapping.w_avg.clone()
        img.square().sum().backward()
        out[f"{name}.grads"] = {k: p.grad.clone() for k, p in G.named_parameters()}
    for name, kwargs in D_CONFIGS.items():
        torch.manual_seed(1)
        D = Discriminator(**kwargs)
        out[f"{name}.keys"] = list(D.state_dict())
        g = torch.Generator().manual_seed(4)
        img = torch.randn([4, kwargs["img_channels"], kwargs["img_resolution"]] * 1 + [kwargs["img_resolution"]],
                          generator=g).requires_grad_(True)
        _, c = _inputs(5, 4, 1, kwargs["c_dim"])
        logits = D(img, c)
        out[f"{name}.logits"] = logits.detach()
        (img_grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
        out[f"{name}.img_grad"] = img_grad.detach()
        (img_grad.square().sum() + logits.sum()).backward()
        out[f"{name}.grads"] = {k: p.grad.clone() for k, p in D.named_parameters()}
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.save(compute(), GOLDEN)
    print(f"wrote {GOLDEN}")
