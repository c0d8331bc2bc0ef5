"""Shared StyleGAN2-ADA base: networks, ADA augmentation, loss, training loop, official-checkpoint import."""
