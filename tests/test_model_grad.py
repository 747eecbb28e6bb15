"""Training-side smoke: gradients flow, and gradient checkpointing gives the same gradients."""

from __future__ import annotations

import torch

from longtake.model import CausalWanDiT, get_preset


def test_gradient_checkpointing_matches():
    torch.manual_seed(0)
    model = CausalWanDiT(get_preset("tiny"))
    x = torch.randn(1, 4, 4, 4, 4)
    text = torch.randn(1, 3, 32)
    sigma = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = ckpt
        model(x, sigma, text).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
