"""The run directory: created for a new run, refused when it holds another run, and the signals that
ask a run to stop (Ctrl-C, Slurm's SIGTERM) turned into a checkpoint-then-exit.

Layout: ``RUN/config.yaml`` (resolved config), ``RUN/metrics.jsonl`` and ``RUN/tb/`` (logs),
``RUN/checkpoints/step_NNNNNN/`` (complete, resumable), ``RUN/final/`` (the model folder), ``RUN/eval*/``.
"""

from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path

from vqkit.errors import VQKitError

# What makes a folder "hold a run": any of these.
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "checkpoints", "final")
# What starting over removes (the folder may hold other things of the user's).
RUN_OUTPUTS = ("metrics.jsonl", "tb", "checkpoints", "final", "eval")


def prepare_run_dir(run_dir: str | Path, *, resume: str | None, overwrite: bool, is_main: bool) -> Path:
    """Create the run directory; refuse to write into another run unless resuming it or told to
    start over (``train.overwrite``)."""
    run_dir = Path(run_dir)
    if is_main:
        existing = run_dir.is_dir() and any((run_dir / name).exists() for name in RUN_MARKERS)
        if existing and resume is None and not overwrite:
            raise VQKitError(f"run directory {run_dir} already holds a run; continue it with --resume auto, "
                             f"choose another --output-dir, or --set train.overwrite=true to start over")
        if existing and resume is None and overwrite:
            for name in RUN_OUTPUTS:
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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
