"""vqkit.utils.distributed: one code path for one process and for many: without a process group the
collectives are the identity; with one (two real gloo processes, as the launchers start them), rank,
world size, gather and broadcast are the group's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

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


def test_two_processes_gather_and_broadcast_in_rank_order():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for rank, r in enumerate(results):
        assert (r["created"], r["again"], r["rank"], r["world"], r["after"]) == (True, False, rank, 2, True)
        assert r["gathered"] == [{"rank": 0, "items": [0]}, {"rank": 1, "items": [0, 1]}]
        assert r["broadcast"] == "from rank 1"
