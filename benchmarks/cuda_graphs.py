"""What CUDA graphs give the one-trial WGAN-GP step (issue 13).

A toy net's step is hundreds of tiny kernel launches, so on a GPU the step's time is the
launch overhead. ``torch.compile`` cannot take the gradient penalty's double backward,
but a CUDA graph (``torch.cuda.CUDAGraph``, PyTorch's "whole-network capture": a
capturable Adam, gradients zeroed in place, random numbers from the default CUDA
generator, which graphs replay with fresh offsets) replays the whole step — n_critic
critic steps with the penalty, then the generator step — as one launch.

The step is plain torch, the same math as the pipeline's (WGAN loss, two-sided penalty
λ = 0.1, Adam lr 1e-4 betas (0.5, 0.9): Gulrajani et al. 2017, ``gan_toy.py``), on a
fixed pool of 25-Gaussians points on the device. Timed: ``--steps`` eager steps and
``--steps`` replays, after warm-up, as milliseconds per generator step; the ratio
eager / graph is the speed-up. On the CPU only the eager step runs (graphs need CUDA).

Usage: ``python benchmarks/cuda_graphs.py [--device cuda] [--width 128] [--steps 200]``;
prints one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


def mlp(inp: int, width: int, out: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(inp, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out),
    )  # fmt: skip


def make_step(width: int, device: torch.device, capturable: bool, n_critic: int = 5):
    torch.manual_seed(0)
    G, D = mlp(2, width, 2).to(device), mlp(2, width, 1).to(device)
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.9), capturable=capturable)
    opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.5, 0.9), capturable=capturable)
    centers = torch.tensor([(x, y) for x in range(-2, 3) for y in range(-2, 3)], device=device)
    pool = 2 * centers.float()[torch.randint(0, 25, (100_000,), device=device)]
    pool = pool + 0.05 * torch.randn_like(pool)
    batch = 256

    def step() -> None:
        for _ in range(n_critic):
            real = pool[torch.randint(0, pool.shape[0], (batch,), device=device)]
            with torch.no_grad():
                fake = G(torch.randn(batch, 2, device=device))
            d_loss = D(fake).mean() - D(real).mean()
            alpha = torch.rand(batch, 1, device=device)
            x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            penalty = 0.1 * (grad.norm(2, dim=1) - 1).pow(2).mean()
            opt_d.zero_grad(set_to_none=False)
            (d_loss + penalty).backward()
            opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = -D(G(torch.randn(batch, 2, device=device))).mean()
        opt_g.zero_grad(set_to_none=False)
        g_loss.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)

    return step, (opt_g, opt_d)


def timed(fn, steps: int, device: torch.device) -> float:
    """Milliseconds per call of ``fn`` over ``steps`` calls."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    step, _ = make_step(args.width, device, capturable=False)
    for _ in range(3):
        step()
    result: dict[str, object] = {
        "benchmark": "cuda_graphs",
        "device": str(device),
        "width": args.width,
        "eager_ms_per_step": round(timed(step, args.steps, device), 3),
    }
    if device.type != "cuda":
        result["graph"] = "skipped: CUDA graphs need CUDA"
        print(json.dumps(result))
        return
    try:
        step, (opt_g, opt_d) = make_step(args.width, device, capturable=True)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream, as the docs ask
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        graph_ms = timed(graph.replay, args.steps, device)
        result["graph_ms_per_step"] = round(graph_ms, 3)
        result["speedup"] = round(float(result["eager_ms_per_step"]) / graph_ms, 2)
    except Exception as exc:  # reported, not hidden: the JSON says what failed
        result["graph"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
