"""The optimizer and learning-rate schedule of a run: AdamW over the model's two parameter groups
(LLM at ``train.lr``, projector + geometry encoder at ``train.proj_lr``) and a linear-warmup cosine."""

from __future__ import annotations

import math

import torch


def build_optimizer(model, train_cfg) -> torch.optim.Optimizer:
    """AdamW over ``model.param_groups(train_cfg)``."""
    return torch.optim.AdamW(model.param_groups(train_cfg), lr=train_cfg.lr, betas=tuple(train_cfg.betas))


def cosine_schedule(optimizer, train_cfg):
    """Linear warmup to the base LRs, then cosine decay to base * min_lr_ratio at max_steps."""
    warmup, total, floor = train_cfg.warmup_steps, train_cfg.max_steps, train_cfg.min_lr_ratio

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
