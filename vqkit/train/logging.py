"""What a run writes about itself while it trains, and the one reader of it.

``RUN/metrics.jsonl`` holds one JSON object per logged step (``step``, ``loss``, ``lr``, ``proj_lr``,
``samples_per_s``, ``tokens_per_s``, ``epoch``, ``elapsed_s``, ``eta_s``) and one per periodic
evaluation (``step`` and ``eval_*`` keys); ``RUN/tb/`` holds the same scalars for TensorBoard.
:func:`read_metrics` is how ``vqkit monitor``, the notebooks and the tests read it back.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from vqkit.errors import DataError
from vqkit.utils.files import read_jsonl

METRICS_FILE = "metrics.jsonl"


def metrics_path(run_dir: str | os.PathLike) -> Path:
    """RUN/metrics.jsonl for a run folder (a path to the file itself is taken as is)."""
    path = Path(run_dir)
    return path / METRICS_FILE if path.is_dir() or path.suffix != ".jsonl" else path


def read_metrics(run_dir: str | os.PathLike, *, missing_ok: bool = True) -> list[dict]:
    """The rows of a run's ``metrics.jsonl``, oldest first.

    The run may still be appending, so a line that does not parse (a half-written last line) is left
    out rather than raised. ``missing_ok=False``: a run without the file is a :class:`DataError`.
    """
    path = metrics_path(run_dir)
    if not path.is_file():
        if missing_ok:
            return []
        raise DataError(f"{path}: no metrics log (train first, or check the run directory)")
    return read_jsonl(path, skip_bad=True)


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class RunLogger:
    """Console lines, metrics.jsonl and TensorBoard, written by the main process only."""

    def __init__(self, run_dir: Path, enabled: bool, progress_bar):
        self.enabled = enabled
        self.bar = progress_bar
        self.writer = None
        self.metrics_file = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))
            self.metrics_file = open(run_dir / METRICS_FILE, "a", buffering=1)

    def print(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        self.metrics_file.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key.replace("eval_", "eval/") if key.startswith("eval_") else f"train/{key}",
                                       value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.metrics_file is not None:
            self.metrics_file.close()
