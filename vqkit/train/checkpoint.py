"""Training checkpoints: complete, atomic, resumable, and free of pickles.

Layout of ``RUN/checkpoints/step_000100/``::

    trainable.safetensors      trainable model weights (projector, geometry encoder, LoRA / LLM)
    optimizer.safetensors      optimizer state tensors, flattened ("state.<param index>.<name>")
    optimizer.json             param_groups and the non-tensor optimizer state
    scheduler.json             LR scheduler state
    rng_rank<R>.safetensors    torch / CUDA / numpy RNG states of rank R (+ rng_rank<R>.json: python)
    trainer_state.json         step, epoch, batch position in the epoch, counters
    deepspeed/                 under DeepSpeed: the engine's own (partitioned) checkpoint instead
    COMPLETE                   written last; a folder without it is never used

A checkpoint is written into ``.tmp_step_000100`` and renamed into place once every rank has
finished, so a run killed mid-write leaves the previous checkpoint as the newest complete one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from vqkit.errors import CheckpointError
from vqkit.utils.files import write_safetensors

COMPLETE = "COMPLETE"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / COMPLETE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_resume(resume: str | None, run_dir: str | Path) -> Path | None:
    """``--resume auto`` -> newest complete checkpoint of run_dir (None if there is none yet);
    a path -> that checkpoint, which must be complete."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if not (path / COMPLETE).is_file():
        raise CheckpointError(f"--resume {resume}: not a complete checkpoint folder (no {COMPLETE} marker)")
    return path


# ----------------------------------------------------------------------------------------------
# Optimizer state <-> safetensors + JSON
# ----------------------------------------------------------------------------------------------


def _optimizer_to_files(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


# ----------------------------------------------------------------------------------------------
# RNG state
# ----------------------------------------------------------------------------------------------


def _rng_to_files() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    py_state = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}
    return tensors, meta


def _rng_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    name, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((name, tensors["numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ----------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def save_checkpoint(run_dir: str | Path, step: int, *, accelerator, model, optimizer, scheduler,
                    trainable_state: dict[str, torch.Tensor] | None, trainer_state: dict,
                    keep: int = 3) -> Path:
    """Write a complete checkpoint for ``step`` atomically; every rank must call this.

    ``trainable_state`` is the (gathered) trainable weights; rank 0 writes them.
    Returns the final folder.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / step_dir_name(step)
    tmp = root / f".tmp_{step_dir_name(step)}"
    rank = accelerator.process_index
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    accelerator.wait_for_everyone()

    if getattr(accelerator.state, "deepspeed_plugin", None) is not None:
        # ZeRO partitions optimizer state across ranks: the engine writes its own shards.
        model.save_checkpoint(str(tmp / "deepspeed"), tag="state", exclude_frozen_parameters=True)
    elif accelerator.is_main_process:
        tensors, meta = _optimizer_to_files(optimizer.state_dict())
        write_safetensors(tmp / "optimizer.safetensors", tensors)
        _write_json(tmp / "optimizer.json", meta)
    if accelerator.is_main_process:
        if trainable_state is not None:
            write_safetensors(tmp / "trainable.safetensors",
                              {k: v.detach().cpu().contiguous() for k, v in trainable_state.items()})
        _write_json(tmp / "scheduler.json", scheduler.state_dict())
        _write_json(tmp / TRAINER_STATE, trainer_state)
    rng_tensors, rng_meta = _rng_to_files()
    write_safetensors(tmp / f"rng_rank{rank}.safetensors", rng_tensors)
    _write_json(tmp / f"rng_rank{rank}.json", rng_meta)
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        (tmp / COMPLETE).write_text(str(step))
        _fsync_dir(tmp)
        if final.exists():  # a checkpoint of the same step from an earlier, interrupted attempt
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, *, accelerator, model, optimizer, scheduler,
                    load_trainable) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns the trainer state.

    ``load_trainable(state_dict)`` puts the trainable weights into the (unwrapped) model.
    """
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (no {COMPLETE} marker)")
    rank = accelerator.process_index
    if getattr(accelerator.state, "deepspeed_plugin", None) is not None:
        model.load_checkpoint(str(path / "deepspeed"), tag="state", load_module_strict=False)
    else:
        load_trainable(load_file(str(path / "trainable.safetensors")))
        meta = json.loads((path / "optimizer.json").read_text())
        optimizer.load_state_dict(_optimizer_from_files(load_file(str(path / "optimizer.safetensors")), meta))
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    rng_file = path / f"rng_rank{rank}.safetensors"
    if rng_file.is_file():
        _rng_from_files(load_file(str(rng_file)), json.loads((path / f"rng_rank{rank}.json").read_text()))
    return read_trainer_state(path)


def read_trainer_state(checkpoint: str | Path) -> dict:
    """A checkpoint's (or a final model folder's) ``trainer_state.json``."""
    return json.loads((Path(checkpoint) / TRAINER_STATE).read_text())
