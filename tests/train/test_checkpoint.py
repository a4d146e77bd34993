"""vqkit.train.checkpoint: a checkpoint holds everything a resumed run needs (trainable weights, the
optimizer's state, the scheduler, every RNG, the trainer's counters) in safetensors and JSON, is written
atomically, replaces an unfinished one of the same step, keeps the newest few, and is never picked
unfinished."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
import torch

from vqkit.config import Config
from vqkit.errors import CheckpointError
from vqkit.train import checkpoint as ckpt
from vqkit.train.accelerator import make_accelerator


@pytest.fixture
def training():
    """A real (CPU) accelerator, a small model, AdamW with momentum after two steps, a warm-up schedule."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)  # a frozen part: not trainable, not in the checkpoint's weights
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    for _ in range(2):
        model(torch.randn(5, 4)).square().mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return make_accelerator(Config()), model, optimizer, scheduler


def trainable(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def save(run_dir, step, accelerator, model, optimizer, scheduler, keep=3):
    return ckpt.save_checkpoint(run_dir, step, accelerator=accelerator, model=model, optimizer=optimizer,
                                scheduler=scheduler, trainable_state=trainable(model),
                                trainer_state={"step": step, "epoch": 1, "batches_in_epoch": 7}, keep=keep)


def test_a_checkpoint_restores_weights_optimizer_scheduler_and_every_rng(training, tmp_path):
    accelerator, model, optimizer, scheduler = training
    folder = save(tmp_path, 2, accelerator, model, optimizer, scheduler)
    assert folder == tmp_path / "checkpoints" / "step_000002" and (folder / ckpt.COMPLETE).read_text() == "2"
    assert {p.suffix for p in folder.iterdir()} <= {".safetensors", ".json", ""}  # no pickles
    after_save = (torch.rand(3), np.random.rand(3), random.random())
    weights, adam = trainable(model), copy.deepcopy(optimizer.state_dict())  # its tensors change in place
    lr = scheduler.get_last_lr()

    # the run goes on (and changes everything), then a new process restores step 2
    model(torch.randn(5, 4)).square().mean().backward()
    optimizer.step()
    scheduler.step()
    for p in model.parameters():
        p.data.add_(1.0)
    state = ckpt.load_checkpoint(folder, accelerator=accelerator, model=model, optimizer=optimizer,
                                 scheduler=scheduler, load_trainable=lambda sd: model.load_state_dict(sd, strict=False))
    assert state == {"step": 2, "epoch": 1, "batches_in_epoch": 7} == ckpt.read_trainer_state(folder)
    for name, value in trainable(model).items():
        assert torch.equal(value, weights[name]), name
    restored = optimizer.state_dict()
    for index, values in adam["state"].items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(restored["state"][index][key]), torch.as_tensor(value)), (index, key)
    assert restored["param_groups"] == json.loads(json.dumps(adam["param_groups"]))  # JSON: betas come back a list
    assert scheduler.get_last_lr() == lr
    assert torch.equal(torch.rand(3), after_save[0])  # the random streams continue where they were saved
    assert np.array_equal(np.random.rand(3), after_save[1]) and random.random() == after_save[2]


def test_the_newest_few_are_kept_and_an_unfinished_one_is_replaced(training, tmp_path):
    accelerator, model, optimizer, scheduler = training
    leftover = tmp_path / "checkpoints" / ".tmp_step_000004"  # a run killed while writing step 4
    leftover.mkdir(parents=True)
    (leftover / "trainable.safetensors").write_text("half written")
    for step in (2, 4, 6, 8):
        save(tmp_path, step, accelerator, model, optimizer, scheduler, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000006", "step_000008"]
    assert not leftover.exists() and sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_000006", "step_000008"]
    # the same step again (a resumed run reaching it once more) replaces it whole
    (tmp_path / "checkpoints" / "step_000008" / "stale.txt").write_text("from the first attempt")
    again = save(tmp_path, 8, accelerator, model, optimizer, scheduler, keep=2)
    assert not (again / "stale.txt").exists() and (again / ckpt.COMPLETE).is_file()
    assert json.loads((again / ckpt.TRAINER_STATE).read_text())["step"] == 8


def test_an_incomplete_checkpoint_is_refused(training, tmp_path):
    accelerator, model, optimizer, scheduler = training
    folder = save(tmp_path, 2, accelerator, model, optimizer, scheduler)
    (folder / ckpt.COMPLETE).unlink()
    with pytest.raises(CheckpointError, match=r"step_000002: incomplete checkpoint \(no COMPLETE marker\)"):
        ckpt.load_checkpoint(folder, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler,
                             load_trainable=model.load_state_dict)
    assert ckpt.list_checkpoints(tmp_path) == [] and ckpt.resolve_resume("auto", tmp_path) is None
    assert ckpt.resolve_resume(None, tmp_path) is None


def test_interrupted_checkpoint_write_is_never_picked(tmp_path):
    run_dir = tmp_path / "run"
    good = run_dir / "checkpoints" / "step_000004"
    good.mkdir(parents=True)
    (good / ckpt.COMPLETE).write_text("4")
    (run_dir / "checkpoints" / ".tmp_step_000008").mkdir()          # killed while writing
    (run_dir / "checkpoints" / "step_000012").mkdir()               # renamed without marker (impossible, but)
    assert ckpt.latest_checkpoint(run_dir) == good
    assert ckpt.resolve_resume("auto", run_dir) == good
    with pytest.raises(Exception, match="not a complete checkpoint"):
        ckpt.resolve_resume(str(run_dir / "checkpoints" / "step_000012"), run_dir)
