"""The process group: one place that joins it, and small collectives.

vqkit's commands run unchanged under ``torchrun``, ``accelerate launch`` and the ``deepspeed`` launcher:
they read RANK / WORLD_SIZE / LOCAL_RANK from the environment. NCCL needs a GPU, so a CPU job uses gloo
(how the multi-process tests run on a laptop).
"""

from __future__ import annotations

import os

import torch


def zero3_partitioned(module) -> bool:
    """Whether DeepSpeed ZeRO-3 has partitioned ``module``'s parameters (they carry its ``ds_id``
    bookkeeping): every call then gathers them collectively, so every rank must make the same calls."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def backend() -> str:
    """nccl on a CUDA machine, gloo otherwise."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def world_size_from_env() -> int:
    """WORLD_SIZE as set by the launcher (1 when launched as a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def active():
    """``torch.distributed`` when a process group is initialised, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init_from_env() -> bool:
    """Join the process group the launcher describes, if there is one and it is not joined yet.
    Returns True when this call created it (the caller then destroys it with :func:`destroy`)."""
    import torch.distributed as dist

    if world_size_from_env() <= 1 or active() is not None:
        return False
    if backend() == "nccl":
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend=backend())
    return True


def destroy() -> None:
    dist = active()
    if dist is not None:
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    dist = active()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def barrier() -> None:
    dist = active()
    if dist is not None:
        dist.barrier()


def all_gather_objects(obj):
    """Every rank's ``obj``, in rank order (a one-element list without a process group)."""
    dist = active()
    if dist is None:
        return [obj]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    dist = active()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
