"""vqkit.utils.distributed: one code path for one process and for many: without a process group the
collectives are the identity; with one (two real gloo processes, as the launchers start them), rank,
world size, gather and broadcast are the group's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from vqkit.utils import distributed


def test_without_a_process_group_the_collectives_are_the_identity(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.world_size_from_env() == 1 and distributed.local_rank() == 0
    assert distributed.init_from_env() is False and distributed.active() is None
    assert distributed.rank_and_world() == (0, 1)
    payload = {"scores": [1, 2]}
    assert distributed.all_gather_objects(payload) == [payload]
    assert distributed.broadcast_object(payload) is payload
    distributed.barrier()
    distributed.destroy()  # nothing to destroy: no error
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.world_size_from_env() == 4 and distributed.local_rank() == 3
    if not torch.cuda.is_available():
        assert distributed.backend() == "gloo"


def test_zero3_partitioned_modules_are_recognised_by_their_parameters():
    plain = torch.nn.Linear(2, 2)
    assert not distributed.zero3_partitioned(plain)
    plain.weight.ds_id = 0  # what DeepSpeed ZeRO-3 attaches to each partitioned parameter
    assert distributed.zero3_partitioned(plain)


WORKER = """
import json, sys
from vqkit.utils import distributed
created = distributed.init_from_env()
again = distributed.init_from_env()
rank, world = distributed.rank_and_world()
gathered = distributed.all_gather_objects({"rank": rank, "items": list(range(rank + 1))})
broadcast = distributed.broadcast_object(f"from rank {rank}", src=1)
distributed.barrier()
distributed.destroy()
print(json.dumps({"created": created, "again": again, "rank": rank, "world": world, "gathered": gathered,
                  "broadcast": broadcast, "after": distributed.active() is None}))
"""


def _two_processes(code: str) -> list[subprocess.CompletedProcess]:
    """Run ``code`` as ranks 0 and 1 of a 2-process gloo group (as a launcher starts them)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "CUDA_VISIBLE_DEVICES": "",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_two_processes_gather_and_broadcast_in_rank_order():
    results = []
    for p in _two_processes(WORKER):
        assert p.returncode == 0, p.stderr
        results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    for rank, r in enumerate(results):
        assert (r["created"], r["again"], r["rank"], r["world"], r["after"]) == (True, False, rank, 2, True)
        assert r["gathered"] == [{"rank": 0, "items": [0]}, {"rank": 1, "items": [0, 1]}]
        assert r["broadcast"] == "from rank 1"


# Registered before vqkit joins the group, this exit hook runs after vqkit's own (atexit runs them last
# registered first): it sees whether the group is still alive when the interpreter goes down.
LEAVES = """
import atexit, json, sys
from vqkit.utils import distributed
atexit.register(lambda: print(json.dumps({"alive_at_exit": distributed.active() is not None}), flush=True))
mode = sys.argv[1]
if mode == "block":
    with distributed.process_group() as (rank, world):
        gathered = distributed.all_gather_objects(rank)
    print(json.dumps({"gathered": gathered, "after_block": distributed.active() is None}), flush=True)
elif mode == "no_destroy":  # a library caller that joins and never leaves: destroyed at exit all the same
    distributed.init_from_env()
    print(json.dumps({"gathered": distributed.all_gather_objects(distributed.rank_and_world()[0])}), flush=True)
else:  # the block raises on every rank: the group is destroyed without a barrier, the error stays the error
    with distributed.process_group() as (rank, world):
        distributed.all_gather_objects(rank)
        raise RuntimeError(f"rank {rank} failed")
"""


@pytest.mark.parametrize("mode", ["block", "no_destroy", "raises"])
def test_a_two_process_run_leaves_no_live_group_at_exit(mode):
    """A gloo process that exits with its group alive can abort at exit ("terminate called without an
    active exception", SIGABRT) after its work is done: a finished job reported as failed. Whoever joins
    the group destroys it before the process ends: process_group() at the end of its block (after a
    barrier, or at once when the block raises), init_from_env's exit hook otherwise."""
    for rank, p in enumerate(_two_processes(LEAVES.replace("sys.argv[1]", repr(mode)))):
        lines = [json.loads(line) for line in p.stdout.strip().splitlines()]
        assert "terminate called" not in p.stderr, p.stderr
        assert lines[-1] == {"alive_at_exit": False}, (p.stdout, p.stderr)
        if mode == "raises":
            assert p.returncode == 1 and f"RuntimeError: rank {rank} failed" in p.stderr, p.stderr
        else:
            assert p.returncode == 0, p.stderr
            assert lines[0]["gathered"] == [0, 1] and lines[0].get("after_block", True) is True
