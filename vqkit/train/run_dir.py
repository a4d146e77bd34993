"""The run directory: locked by the run that takes it, created for a new run, refused when it holds
another run, the record of a run that failed, the check that a resumed run keeps its checkpoint's
config, and the signals that ask a run to stop (Ctrl-C, Slurm's SIGTERM) turned into a
checkpoint-then-exit.

Layout: ``RUN/config.yaml`` (resolved config), ``RUN/metrics.jsonl`` and ``RUN/tb/`` (logs),
``RUN/checkpoints/step_NNNNNN/`` (complete, resumable), ``RUN/final/`` (the model folder; ``RUN/encoder/``
for ``vqkit pretrain-encoder``), ``RUN/eval*/``,
``RUN/failed.json`` (the error of the last attempt, when it failed), ``RUN/run.lock`` (:class:`RunDirLock`).

From the moment a run takes its folder (before it reads a checkpoint or removes anything) until it
ends, its main process holds an exclusive lock on ``RUN/run.lock``: a second run on the same folder
fails in one line naming the holder. The operating system drops the lock when the holder exits, even
by a crash or ``kill -9``, so a lock never outlives its run.

A folder *holds a run* when it has a complete checkpoint, a final model or logged training steps; an
attempt that failed before its first logged step leaves none of these, so a retry with the same
``--output-dir`` reuses the folder (its config.yaml, logs and failed.json are replaced).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from vqkit.errors import ConfigError, VQKitError
from vqkit.train.checkpoint import list_checkpoints
from vqkit.train.logging import read_metrics
from vqkit.utils.files import write_json_atomic

# What starting over removes (the folder may hold other things of the user's).
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "tb", "checkpoints", "final", "eval", "eval_views_removed",
               "failed.json", "encoder")
FAILED_FILE = "failed.json"
LOCK_FILE = "run.lock"

#: Config keys a resumed run may change (dotted; a key ending in "." covers its whole section). They
#: decide how long the run goes, what it logs, saves and evaluates, how data is read, and how a step is
#: computed (checkpointing, compiled or fused kernels: the memory and speed, not the model or the data).
#: ``train.max_steps`` moves the end of the cosine schedule: from the resumed step on, the learning rate
#: follows the schedule of the new length. Every other change (learning rates, batch, data, model, seed,
#: ...) is refused, since the checkpoint's optimizer and schedule state would silently keep the old values.
#: ``train.batch_size_per_gpu`` may change too when ``train.global_batch_size`` is set (and kept): the
#: accumulation follows, so every step keeps its samples, as on another number of GPUs.
RESUMABLE_KEYS = (
    "train.max_steps", "train.log_every_steps", "train.save_every_steps", "train.keep_checkpoints",
    "train.eval_every_steps", "train.eval_samples", "train.max_nonfinite_steps", "train.output_dir",
    "train.overwrite", "eval.", "data.val", "data.num_workers", "data.persistent_workers", "data.feature_cache",
    "model.llm.gradient_checkpointing", "model.llm.liger_kernels", "model.encoder.compile",
)


class RunDirLock:
    """An exclusive ``flock`` on ``RUN/run.lock`` for as long as a run uses its folder.

    :meth:`acquire` creates the folder, takes the lock without waiting and writes the holder (pid, host)
    into the file; a folder locked by another process is a one-line :class:`~vqkit.errors.VQKitError`
    naming the folder and that holder. :meth:`release` (or the process's exit, however it ends) drops
    it. The file stays: removing it would let two processes lock two different files of one name.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> RunDirLock:
        if self.held:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # held open for the life of the run
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = _describe_holder(f.read())
            f.close()
            raise VQKitError(f"run directory {self.run_dir} is in use by another run ({holder}); wait for it to "
                             f"end, or choose another --output-dir") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}) + "\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe_holder(text: str) -> str:
    """"pid N on HOST" from a lock file's content (what the holder wrote when it took the lock)."""
    try:
        holder = json.loads(text)
        return f"pid {int(holder['pid'])} on {holder['host']}"
    except (ValueError, KeyError, TypeError):
        return "its holder is starting"  # locked, but the holder has not written its pid yet


def _logged_steps(run_dir: Path) -> int:
    """The last training step RUN/metrics.jsonl logged (0 when none)."""
    steps = [r.get("step", 0) for r in read_metrics(run_dir) if "loss" in r]
    return max(steps, default=0)


def read_failure(run_dir: str | Path) -> dict | None:
    """RUN/failed.json (``error``, ``step``, ``time``, ``rank``) when the run's last attempt failed."""
    path = Path(run_dir) / FAILED_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return {"error": f"{path} is unreadable"}


def record_failure(run_dir: str | Path, error: BaseException, step: int, rank: int = 0) -> Path:
    """Write RUN/failed.json: the error in one line, the step reached, when; what ``vqkit monitor`` shows."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = text if isinstance(error, VQKitError) else f"{type(error).__name__}: {text}".rstrip(": ")
    return write_json_atomic(Path(run_dir) / FAILED_FILE,
                             {"error": line, "step": step, "time": time.time(), "rank": rank})


def prepare_run_dir(run_dir: str | Path, *, resuming: bool, overwrite: bool, is_main: bool) -> Path:
    """Create the run directory; refuse to write into another run unless resuming it or told to
    start over (``train.overwrite``). A folder left by an attempt that never logged a step (it failed
    during setup) holds no run: a new attempt reuses it."""
    run_dir = Path(run_dir)
    if is_main:
        if not resuming and run_dir.is_dir():
            trained = (bool(list_checkpoints(run_dir)) or (run_dir / "final").exists()
                       or (run_dir / "encoder").exists() or _logged_steps(run_dir) > 0)
            if trained and not overwrite:
                failure = read_failure(run_dir)
                why = (f" (its last attempt failed at step {failure.get('step')}: {failure.get('error')})"
                       if failure else "")
                raise VQKitError(f"run directory {run_dir} already holds a run{why}; continue it with --resume auto, "
                                 f"choose another --output-dir, or --set train.overwrite=true to start over")
            for name in RUN_OUTPUTS:  # an attempt that never trained, or train.overwrite
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        (run_dir / FAILED_FILE).unlink(missing_ok=True)  # a new attempt: the last one's failure is history
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _may_change(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) or key.startswith(k + ".")
               for k in RESUMABLE_KEYS)


def resume_config_changes(saved: dict, current: dict, checkpoint: str | Path) -> dict[str, list]:
    """Compare the config a checkpoint was trained with (``saved``, as nested dicts) with the one a
    resumed run is given; returns the allowed changes ``{key: [old, new]}`` (:data:`RESUMABLE_KEYS`).
    Any other difference raises one ConfigError naming the keys and both values."""
    old, new = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(current)))
    for flat in (old, new):  # grad_accum 1 was written out before it could be left unset (None = 1)
        if flat.get("train.grad_accum") is None and flat.get("train.global_batch_size") is None:
            flat["train.grad_accum"] = 1
    changed = {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    # With a global batch set, each step keeps its samples whatever the per-process batch (the accumulation
    # follows it), like a different GPU count: a memory choice.
    global_batch_kept = old.get("train.global_batch_size") is not None and "train.global_batch_size" not in changed
    refused = {k: v for k, v in changed.items()
               if not (_may_change(k) or (k == "train.batch_size_per_gpu" and global_batch_kept))}
    if refused:
        shown = "; ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in refused.items())
        raise ConfigError(f"cannot resume from {checkpoint} with a different config: {shown}. A checkpoint keeps "
                          f"its optimizer and schedule, so these cannot change on resume: drop the overrides, or "
                          f"start a new run (another --output-dir). Keys that may change on resume: "
                          f"{', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE_KEYS)}")
    return {k: v for k, v in changed.items() if k not in refused}


class StopRequest:
    """Turns SIGINT / SIGTERM into a flag checked between steps, so a checkpoint can be saved.

    A second Ctrl-C stops at once. SIGTERM never does: under Slurm it arrives more than once (the
    job's processes are all signalled, and torchrun forwards its own copy to its workers), and the
    step in progress must finish before the checkpoint. Signal handlers can only be set from the main
    thread; elsewhere (a notebook's worker thread) the context does nothing.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
