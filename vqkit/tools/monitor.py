"""``vqkit monitor RUN [--watch]``: where a run stands, from its files alone.

Reads RUN/config.yaml, RUN/metrics.jsonl, RUN/checkpoints/ and RUN/failed.json, so it works on a
login node while the job runs elsewhere, and on finished or failed runs (a failure is shown with its
error line and the step it reached).
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from vqkit.errors import VQKitError
from vqkit.train.checkpoint import latest_checkpoint
from vqkit.train.logging import read_metrics
from vqkit.train.run_dir import read_failure


def run_status(run_dir: str | Path) -> dict:
    """Progress summary: step, max_steps, last loss, speed, ETA, newest checkpoint, finished, and
    ``failed`` (RUN/failed.json: error, step, time) when the last attempt failed."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise VQKitError(f"{run_dir}: not a vqkit run directory (no config.yaml)")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    max_steps = cfg["train"]["max_steps"]
    rows = read_metrics(run_dir)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if any(k.startswith("eval_") for k in r)]
    last = train[-1] if train else {}
    latest = latest_checkpoint(run_dir)
    updated = (run_dir / "metrics.jsonl").stat().st_mtime if (run_dir / "metrics.jsonl").exists() else None
    return {
        "run": str(run_dir),
        "step": last.get("step", 0),
        "max_steps": max_steps,
        "progress": last.get("step", 0) / max_steps,
        "loss": last.get("loss"),
        "lr": last.get("lr"),
        "samples_per_s": last.get("samples_per_s"),
        "eta_s": last.get("eta_s"),
        "last_eval": {k: v for k, v in evals[-1].items()} if evals else None,
        "checkpoint": str(latest) if latest else None,
        "finished": (run_dir / "final").is_dir(),
        "failed": read_failure(run_dir),
        "seconds_since_update": (time.time() - updated) if updated else None,
    }


def format_status(status: dict) -> str:
    bar_width = 30
    filled = int(bar_width * min(1.0, status["progress"]))
    lines = [f"run       {status['run']}",
             f"progress  [{'#' * filled}{'.' * (bar_width - filled)}] step {status['step']}/{status['max_steps']}"
             f" ({100 * status['progress']:.1f}%){'  finished' if status['finished'] else ''}"
             f"{'  FAILED' if status.get('failed') and not status['finished'] else ''}"]
    if status["loss"] is not None:
        lines.append(f"loss      {status['loss']:.4f}   lr {status['lr']:.2e}   "
                     f"{status['samples_per_s']:.1f} samples/s")
    if status["eta_s"] is not None and not status["finished"]:
        lines.append(f"eta       {status['eta_s'] / 60:.1f} min")
    if status["last_eval"]:
        lines.append("eval      " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in status["last_eval"].items()))
    lines.append(f"checkpoint {status['checkpoint'] or '(none yet)'}")
    failed = status.get("failed")
    if failed:
        ago = f", {time.time() - failed['time']:.0f} s ago" if isinstance(failed.get("time"), (int, float)) else ""
        lines.append(f"FAILED    at step {failed.get('step', '?')}{ago}: {failed.get('error')}")
        lines.append(f"          {_retry_hint(status)}")
    if status["seconds_since_update"] is not None and not status["finished"] and not failed:
        lines.append(f"last log  {status['seconds_since_update']:.0f} s ago")
    return "\n".join(lines)


def _retry_hint(status: dict) -> str:
    """What to run after fixing the cause of a failure."""
    if status["checkpoint"]:
        return "fix the cause, then continue with --resume auto"
    if not status["step"]:
        return "fix the cause, then run the same command again (no step was trained: the folder is reused)"
    return "no checkpoint to resume: --set train.overwrite=true starts over, or choose another --output-dir"
