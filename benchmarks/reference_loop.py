"""The hand-written baseline: a WGAN toy training loop as a researcher writes it.

Modelled on the WGAN-GP authors' toy script (Gulrajani et al. 2017, caogang/wgan-gp
``gan_toy.py``): 2-D noise → 3×512 ReLU → 2 generator, 2 → 3×512 ReLU → 1 critic,
batch 256, n_critic 5, Adam 1e-4 betas (0.5, 0.9), WGAN loss ``D(fake) - D(real)`` with
separate critic passes over the real and the fake batch, λ = 0.1 gradient penalty on
per-sample interpolates. The other constraints are the usual few lines: torch's
spectral-norm parametrization on each critic Linear, or clamping every critic parameter
to [-0.01, 0.01] after each critic step (with RMSProp lr 5e-5, the WGAN recipe).

No logging, no ``.item()``, no host sync in the loop: the fastest fair version of the
same math, used by ``benchmarks/overhead.py`` as the yardstick for the pipeline.
"""

from __future__ import annotations

import time

import torch
from torch import autograd, nn
from torch.nn.utils.parametrizations import spectral_norm

from pipeline_plugins.datasets.grid25 import Grid25

CONSTRAINTS = ("none", "gradient_penalty", "spectral_norm", "weight_clipping")

DIM = 512
NOISE_DIM = 2
BATCH_SIZE = 256
CRITIC_ITERS = 5
LAMBDA = 0.1  # gan_toy.py's penalty weight
CLIP = 0.01  # Arjovsky et al. 2017


def mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, DIM),
        nn.ReLU(),
        nn.Linear(DIM, DIM),
        nn.ReLU(),
        nn.Linear(DIM, DIM),
        nn.ReLU(),
        nn.Linear(DIM, out_dim),
    )


def calc_gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor):
    alpha = torch.rand(real.shape[0], 1)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    disc_interpolates = netD(interpolates)
    (gradients,) = autograd.grad(
        outputs=disc_interpolates,
        inputs=interpolates,
        grad_outputs=torch.ones_like(disc_interpolates),
        create_graph=True,
    )
    return ((gradients.norm(2, dim=1) - 1) ** 2).mean() * LAMBDA


def train(constraint: str, steps: int, *, seed: int = 0, warmup_steps: int = 1) -> float:
    """Train for ``steps`` generator steps; return the seconds taken by the steps after
    the first ``warmup_steps`` (measured with ``time.perf_counter``; CPU, so no sync)."""
    if constraint not in CONSTRAINTS:
        raise ValueError(f"unknown constraint {constraint!r}")
    if not 0 <= warmup_steps < steps:
        raise ValueError("need 0 <= warmup_steps < steps")
    torch.manual_seed(seed)
    data = Grid25()
    data_rng = torch.Generator().manual_seed(seed)

    netG = mlp(NOISE_DIM, 2)
    netD = mlp(2, 1)
    if constraint == "spectral_norm":
        for layer in netD:
            if isinstance(layer, nn.Linear):
                spectral_norm(layer)
    if constraint == "weight_clipping":
        optimizerD = torch.optim.RMSprop(netD.parameters(), lr=5e-5)
        optimizerG = torch.optim.RMSprop(netG.parameters(), lr=5e-5)
    else:
        optimizerD = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.9))
        optimizerG = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.9))

    start = time.perf_counter()
    for iteration in range(steps):
        if iteration == warmup_steps:
            start = time.perf_counter()
        # (1) update D
        for p in netD.parameters():
            p.requires_grad = True
        for _ in range(CRITIC_ITERS):
            real = data.sample(BATCH_SIZE, data_rng)
            netD.zero_grad()
            D_real = netD(real).mean()
            noise = torch.randn(BATCH_SIZE, NOISE_DIM)
            fake = netG(noise).detach()
            D_fake = netD(fake).mean()
            D_cost = D_fake - D_real
            if constraint == "gradient_penalty":
                D_cost = D_cost + calc_gradient_penalty(netD, real, fake)
            D_cost.backward()
            optimizerD.step()
            if constraint == "weight_clipping":
                with torch.no_grad():
                    for p in netD.parameters():
                        p.clamp_(-CLIP, CLIP)
        # (2) update G
        for p in netD.parameters():
            p.requires_grad = False
        netG.zero_grad()
        noise = torch.randn(BATCH_SIZE, NOISE_DIM)
        fake = netG(noise)
        G_cost = -netD(fake).mean()
        G_cost.backward()
        optimizerG.step()
    return time.perf_counter() - start
