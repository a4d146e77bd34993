"""Seeds, devices and numeric precision: the choices every command makes the same way."""

from __future__ import annotations

import contextlib
import os
import random

import torch


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (every CUDA device too)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def seeded(seed: int):
    """A context in which torch's CPU generator is seeded, restoring the caller's state after
    (deterministic construction without disturbing anyone's random stream)."""
    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    return ctx()


def move_to_device(batch, device):
    """Tensors of a (nested) batch on ``device``; other values unchanged."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def resolve_device(arg: str | None = "auto") -> torch.device:
    """``auto``/None: this process's GPU (``cuda:LOCAL_RANK``) when there is one, else the CPU."""
    if arg not in (None, "auto"):
        return torch.device(arg)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_mixed_precision(setting: str) -> str:
    """``train.mixed_precision``: 'auto' -> bf16 on a CUDA GPU with bf16 support, else 'no' (fp32)."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def autocast(device: torch.device | str, precision: str = "auto"):
    """The autocast context for ``precision`` ('auto', 'bf16', 'fp16', 'no') on ``device``.

    Autocast runs only on CUDA: on the CPU vqkit computes in fp32 (these CPUs have no fast bf16, and
    the CPU is for the demo and tests, where exact fp32 results matter).
    """
    device = torch.device(device)
    precision = resolve_mixed_precision(precision)
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def enter_project(work_dir: str | os.PathLike | None = None):
    """``os.chdir`` to ``work_dir``, or by default to the repository root when the current folder is
    inside a vqkit checkout (a notebook opened anywhere in it), else stay. Relative paths in configs and
    notebooks then start where the README's commands run. Returns the folder."""
    from pathlib import Path

    here = Path.cwd()
    target = Path(work_dir) if work_dir else next(
        (p for p in [here, *here.parents] if (p / "pyproject.toml").is_file() and (p / "vqkit").is_dir()), here)
    os.chdir(target)
    return target
