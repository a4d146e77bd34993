"""The optimizer and learning-rate schedule of a run: AdamW over the model's two parameter groups
(LLM at ``train.lr``, projector + geometry encoder at ``train.proj_lr``) and a linear-warmup cosine."""

from __future__ import annotations

import math

import torch

from vqkit.utils.runtime import resolve_device


def build_optimizer(model, train_cfg, device: str | torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW over ``model.param_groups(train_cfg)``.

    On a GPU (``device``, or None = where training will run: CUDA when available, as the trainer
    builds the model on the CPU and moves it after) torch's fused AdamW: one kernel updates every
    parameter in place, instead of foreach AdamW's launches per operation and its moment-sized
    temporary. On the CPU the default implementation, whose results the CPU tests and the demo pin.
    """
    fused = resolve_device(device).type == "cuda"
    return torch.optim.AdamW(model.param_groups(train_cfg), lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                             fused=fused or None)


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """How an AdamW runs: "fused", "foreach" or "for-loop" (what bench reports)."""
    if optimizer.defaults.get("fused"):
        return "fused"
    foreach = optimizer.defaults.get("foreach")
    if foreach is None:  # torch's default: foreach when every parameter is on a GPU
        params = [p for g in optimizer.param_groups for p in g["params"]]
        foreach = bool(params) and all(p.is_cuda for p in params)
    return "foreach" if foreach else "for-loop"


def lr_factor(step: int, train_cfg) -> float:
    """The schedule's multiplier of the base learning rates at optimizer step ``step`` (0-based): linear
    warmup over ``train.warmup_steps``, then cosine decay to ``train.min_lr_ratio`` at ``train.max_steps``."""
    warmup, total, floor = train_cfg.warmup_steps, train_cfg.max_steps, train_cfg.min_lr_ratio
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule(optimizer, train_cfg):
    """Linear warmup to the base LRs, then cosine decay to base * min_lr_ratio at max_steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, train_cfg))


def schedule_warning(train_cfg) -> str | None:
    """One line when the schedule cannot fit its steps (``train.warmup_steps >= train.max_steps``: the
    learning rate is still warming up when training ends), saying the peak it reaches; else None."""
    warmup, total = train_cfg.warmup_steps, train_cfg.max_steps
    if warmup < total:
        return None
    peak = max(lr_factor(step, train_cfg) for step in range(total))
    return (f"train.warmup_steps ({warmup}) >= train.max_steps ({total}): the learning rate never leaves its "
            f"warmup and peaks at {peak * train_cfg.lr:.2e} instead of train.lr {train_cfg.lr:.2e} "
            f"(train.proj_lr: {peak * train_cfg.proj_lr:.2e} instead of {train_cfg.proj_lr:.2e}), with no decay; "
            f"set train.warmup_steps below {total} (e.g. --set train.warmup_steps={total // 10})")
