"""vqkit.utils.runtime: seeds (every generator, or torch's for one block without disturbing the
caller's stream), batches moved to a device, the device and precision each command picks, and the
folder notebooks start in."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest
import torch

from vqkit.utils.runtime import (
    autocast,
    enter_project,
    move_to_device,
    resolve_device,
    resolve_mixed_precision,
    seeded,
    set_seed,
)


@pytest.fixture(autouse=True)
def _keep_global_seeds():
    """These tests reseed the global generators: give the next test back what it had."""
    state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    yield
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.random.set_rng_state(state[2])


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_set_seed_seeds_python_numpy_and_torch():
    set_seed(11)
    first = draws()
    set_seed(11)
    assert draws() == first
    set_seed(12)
    assert all(a != b for a, b in zip(draws(), first, strict=True))


def test_seeded_blocks_are_reproducible_and_leave_the_callers_stream_alone():
    torch.manual_seed(0)
    expected_after = torch.rand(3)
    torch.manual_seed(0)
    with seeded(5):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(inside, torch.rand(3))  # the block draws as from manual_seed(5)
    assert torch.equal(after, expected_after)  # and the caller continues as if it had not run
    with seeded(5):
        assert torch.equal(torch.rand(3), inside)


def test_move_to_device_moves_every_tensor_and_nothing_else():
    meta = torch.device("meta")  # a real device every build has: a move is visible in .device
    images = [torch.zeros(2), torch.ones(3)]
    names = ["a", "b"]
    batch = {"x": torch.zeros(2, 3), "nested": {"y": torch.ones(1), "n": 3}, "images": images,
             "pair": (torch.zeros(1), torch.zeros(1)), "names": names, "empty": []}
    moved = move_to_device(batch, meta)
    assert moved["x"].device == meta and moved["x"].shape == (2, 3)
    assert moved["nested"]["y"].device == meta and moved["nested"]["n"] == 3
    assert type(moved["images"]) is list and [t.device for t in moved["images"]] == [meta, meta]
    assert type(moved["pair"]) is tuple and all(t.device == meta for t in moved["pair"])
    assert moved["names"] is names and moved["empty"] == []
    assert batch["x"].device.type == "cpu"  # the caller's batch is not changed in place
    assert move_to_device(torch.ones(2), meta).device == meta and move_to_device("text", meta) == "text"


def test_devices_and_precision_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_mixed_precision("fp16") == "fp16" and resolve_mixed_precision("no") == "no"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
        assert resolve_mixed_precision("auto") == "no"


def test_auto_picks_this_ranks_gpu_and_bf16_where_supported(monkeypatch):
    """The choice on a GPU node (the CUDA queries answered as a 2-GPU node with bf16 would): local
    rank 3 runs on GPU 1, and 'auto' precision is bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device() == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_mixed_precision("auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_mixed_precision("auto") == "no"


def test_autocast_only_on_cuda():
    """On the CPU vqkit computes in fp32 whatever the precision asks; on CUDA it autocasts."""
    a = torch.ones(4, 4)
    for precision in ("auto", "bf16", "fp16", "no"):
        with autocast("cpu", precision):
            assert (a @ a).dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU-only build warns that CUDA autocast is off
        bf16, fp16 = autocast("cuda", "bf16"), autocast("cuda", "fp16")
    assert isinstance(bf16, torch.autocast) and bf16.fast_dtype == torch.bfloat16
    assert isinstance(fp16, torch.autocast) and fp16.fast_dtype == torch.float16
    assert not isinstance(autocast("cuda", "no"), torch.autocast)


def test_enter_project_finds_the_checkout_root(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    (root / "vqkit").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'vqkit'\n")
    (root / "notebooks" / "deep").mkdir(parents=True)
    monkeypatch.chdir(root / "notebooks" / "deep")
    assert enter_project() == root and os.getcwd() == str(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert enter_project() == elsewhere and os.getcwd() == str(elsewhere)  # outside a checkout: stay
    assert enter_project(root / "notebooks") == root / "notebooks"  # an explicit folder wins
    assert os.getcwd() == str(root / "notebooks")
