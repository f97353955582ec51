"""The training optimizer is torch's fused Adam on CPU tensors, and steps like the per-tensor Adam."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from neural3d.config import OptimConfig
from neural3d.training.optim import build_optimizer


def _params(seed: int) -> dict[str, list[torch.nn.Parameter]]:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoding": [torch.nn.Parameter(torch.randn(4096, generator=g) * 1e-4)],
        "network": [torch.nn.Parameter(torch.randn(16, 8, generator=g))],
    }


def test_fused_on_cpu_and_equal_to_the_per_tensor_loop():
    cfg = OmegaConf.structured(OptimConfig(weight_decay=1e-6))
    fused_groups, ref_groups = _params(0), _params(0)
    fused = build_optimizer(fused_groups, cfg)
    assert fused.defaults["fused"] is True
    ref = torch.optim.Adam(
        [{"params": p, "weight_decay": 0.0 if k == "encoding" else 1e-6} for k, p in ref_groups.items()],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        foreach=False,
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in fused_groups["encoding"] + fused_groups["network"]]
        for opt, groups in ((fused, fused_groups), (ref, ref_groups)):
            for p, grad in zip(groups["encoding"] + groups["network"], grads):
                p.grad = grad.clone()
            opt.step()
    for a, b in zip(fused_groups["encoding"] + fused_groups["network"], ref_groups["encoding"] + ref_groups["network"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_adamw_is_fused_too():
    cfg = OmegaConf.structured(OptimConfig(optimizer="adamw", weight_decay=1e-2))
    opt = build_optimizer(_params(0), cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
