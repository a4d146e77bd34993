"""The process group: one place that joins it, and small collectives.

vqkit's commands run unchanged under ``torchrun``, ``accelerate launch`` and the ``deepspeed`` launcher:
they read RANK / WORLD_SIZE / LOCAL_RANK from the environment. NCCL needs a GPU, so a CPU job uses gloo
(how the multi-process tests run on a laptop).

Leaving the group: a process that exits while its group is alive can abort at exit (gloo's threads are
torn down with the interpreter: "terminate called without an active exception", SIGABRT, after all the
work was done and written), which marks a finished job as failed. So whoever creates the group destroys
it before the process ends: :func:`process_group` around a command's work (a barrier, then the destroy;
on an error the destroy alone, since the other ranks may never reach a barrier), and
:func:`init_from_env` registers the same destroy at exit for library callers that never call
:func:`destroy`.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager

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
    Returns True when this call created it: the caller then leaves it with :func:`destroy` (or uses
    :func:`process_group`); should it not, the group is destroyed at exit all the same."""
    import torch.distributed as dist

    if world_size_from_env() <= 1 or active() is not None:
        return False
    if backend() == "nccl":
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend=backend())
    atexit.register(destroy, barrier=False)  # no barrier at exit: the other ranks may have failed
    return True


def destroy(barrier: bool = True) -> None:
    """Leave the process group, if one is initialised: every rank waits for the others first
    (``barrier``: none is still talking to this one when it tears its side down), then destroys it.
    ``barrier=False`` on an error path, where another rank may never arrive."""
    dist = active()
    if dist is None:
        return
    if barrier:
        dist.barrier()
    dist.destroy_process_group()


@contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """``with process_group() as (rank, world):`` joins the launcher's group for the block (when there is
    one and the caller has not joined it) and leaves it at the end: a barrier then the destroy when the
    block succeeds, the destroy alone when it raises. A group the caller created stays the caller's."""
    created = init_from_env()
    try:
        yield rank_and_world()
    except BaseException:
        if created:
            destroy(barrier=False)
        raise
    if created:
        destroy()


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
