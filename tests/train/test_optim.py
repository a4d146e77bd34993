"""The optimizer: torch's fused AdamW where training runs on a GPU, the default one on the CPU."""

from __future__ import annotations

import torch
from torch import nn

from vqkit.config import TrainConfig
from vqkit.train.optim import build_optimizer, optimizer_kind


class TwoGroups(nn.Module):
    """The interface build_optimizer uses: ``param_groups(train_cfg)``."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

    def param_groups(self, train_cfg):
        return [{"params": list(self.a.parameters()), "lr": train_cfg.lr},
                {"params": list(self.b.parameters()), "lr": train_cfg.proj_lr}]


def test_fused_adamw_for_a_gpu_default_on_the_cpu():
    train_cfg = TrainConfig(lr=1e-3, proj_lr=2e-3, betas=[0.9, 0.95])
    on_gpu = build_optimizer(TwoGroups(), train_cfg, device="cuda")  # built on the CPU, moved after (as training)
    assert on_gpu.defaults["fused"] is True and optimizer_kind(on_gpu) == "fused"
    on_cpu = build_optimizer(TwoGroups(), train_cfg, device="cpu")
    assert not on_cpu.defaults["fused"] and optimizer_kind(on_cpu) == "for-loop"
    assert [g["lr"] for g in on_cpu.param_groups] == [1e-3, 2e-3] and on_cpu.defaults["betas"] == (0.9, 0.95)
    if not torch.cuda.is_available():
        assert optimizer_kind(build_optimizer(TwoGroups(), train_cfg)) == "for-loop"  # None: where training runs


def test_fused_and_default_adamw_take_the_same_step():
    """The fused kernel is the same update (here its CPU build): a GPU run changes no result."""
    train_cfg = TrainConfig(lr=1e-2, proj_lr=1e-2)
    models = [TwoGroups(), TwoGroups()]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(4, 3)
    for model, device in zip(models, ("cpu", "cuda"), strict=True):
        optimizer = build_optimizer(model, train_cfg, device=device)
        for _ in range(3):
            model.b(model.a(x)).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_schedule_that_cannot_fit_is_one_warning_with_its_peak():
    """warmup_steps 100 beside max_steps 20 used to peak the learning rate at a fifth of train.lr in silence."""
    from vqkit.train.optim import cosine_schedule, schedule_warning

    train_cfg = TrainConfig(lr=1e-3, proj_lr=5e-4, warmup_steps=100, max_steps=20)
    optimizer = build_optimizer(TwoGroups(), train_cfg, device="cpu")
    scheduler = cosine_schedule(optimizer, train_cfg)
    used = []
    for _ in range(train_cfg.max_steps):  # the learning rate each optimizer step is taken with
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    warning = schedule_warning(train_cfg)
    assert len(warning.splitlines()) == 1
    assert warning.startswith("train.warmup_steps (100) >= train.max_steps (20): the learning rate never leaves its "
                              f"warmup and peaks at {max(used):.2e} instead of train.lr 1.00e-03")
    assert "2.00e-04" in warning and "(train.proj_lr: 1.00e-04 instead of 5.00e-04)" in warning
    assert "--set train.warmup_steps=2" in warning
    # warmup == max_steps reaches train.lr at the last step but never decays: still said
    assert "peaks at 1.00e-03" in schedule_warning(TrainConfig(lr=1e-3, warmup_steps=20, max_steps=20))
    assert schedule_warning(TrainConfig(warmup_steps=19, max_steps=20)) is None
    assert schedule_warning(TrainConfig(warmup_steps=0, max_steps=1)) is None
