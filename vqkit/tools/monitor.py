"""``vqkit monitor RUN [--watch]``: where a run stands, from its files alone.

Reads RUN/config.yaml, RUN/metrics.jsonl, RUN/checkpoints/, RUN/failed.json, the finished model
(RUN/final/, or RUN/encoder/ for ``vqkit pretrain-encoder``) and the evaluations (``metrics.json`` in
RUN/eval*/, in the folders of runs inside RUN such as the demo's RUN/blind/eval, and in the model
folder's own eval*/), so it works on a login node while the job runs elsewhere, and on finished or
failed runs (a failure is shown with its error line and the step it reached).

Given a model folder (RUN/final: config.yaml, trainable.safetensors, trainer_state.json) instead of a
run, it says it is a finished model and at which step, with the run it came from when that is its
parent folder.

A run is *finished* when it left its model (final/ or encoder/) or its last logged step is
``train.max_steps``. :func:`exit_code`: 0 for a run in progress or finished, 1 for a failed run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from vqkit.errors import VQKitError
from vqkit.train.checkpoint import TRAINER_STATE, latest_checkpoint
from vqkit.train.logging import read_metrics
from vqkit.train.run_dir import read_failure

#: The weights file of a model folder: a VQ model's (vqkit train) or an encoder's (vqkit pretrain-encoder).
MODEL_WEIGHTS = ("trainable.safetensors", "model.safetensors")
#: Where a run leaves its finished model.
MODEL_DIRS = ("final", "encoder")


def is_model_folder(path: Path) -> bool:
    """A saved model (RUN/final, RUN/encoder): its config.yaml and weights, and no training log."""
    return ((path / "config.yaml").is_file() and any((path / w).is_file() for w in MODEL_WEIGHTS)
            and not (path / "metrics.jsonl").exists())


def _model_of(run_dir: Path) -> tuple[Path | None, int | None]:
    """(the run's finished model folder, the step it was saved at) or (None, None)."""
    for name in MODEL_DIRS:
        folder = run_dir / name
        if folder.is_dir() and is_model_folder(folder):
            return folder, _read_json(folder / TRAINER_STATE).get("step")
    return None, None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def evaluations(*folders: Path) -> list[dict]:
    """The evaluations written in ``folders`` (their eval*/metrics.json, and those of runs one level
    inside them): folder (relative to the first of ``folders`` when inside it), questions, overall EM, EM per
    question type, Stage 2 parse rate, what was evaluated (data, step, views removed, a blind-trained model)."""
    found, seen = [], set()
    for folder in folders:
        candidates = sorted(folder.glob("eval*/metrics.json")) + sorted(folder.glob("*/eval*/metrics.json"))
        for path in candidates:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            metrics = _read_json(path)
            overall = metrics.get("overall") or {}
            info = metrics.get("info") or {}
            roomplan = metrics.get("roomplan") or {}
            found.append({"dir": str(path.parent.relative_to(folders[0])) if path.is_relative_to(folders[0])
                          else str(path.parent),
                          "n": metrics.get("n"), "em": overall.get("em"),
                          "by_qtype": {q: m.get("em") for q, m in (metrics.get("by_qtype") or {}).items()},
                          "parse_rate": roomplan.get("parse_rate"), "data": info.get("data"),
                          "step": info.get("step"), "views_removed": bool(info.get("views_removed")),
                          "trained_blind": bool(info.get("trained_blind"))})
    return found


def run_status(path: str | Path) -> dict:
    """Progress summary of a run folder (or of a model folder, ``kind`` "model"): step, max_steps, last
    loss, speed, ETA, newest checkpoint, the finished model and its step, finished, ``failed``
    (RUN/failed.json: error, step, time) when the last attempt failed, and the evaluations."""
    path = Path(path)
    if not path.is_dir():
        raise VQKitError(f"{path}: not found (give a run folder, train.output_dir, or a model folder, RUN/final)")
    if not (path / "config.yaml").is_file():
        raise VQKitError(f"{path}: not a vqkit run or model folder (no config.yaml)")
    if is_model_folder(path):
        return _model_status(path)
    cfg = yaml.safe_load((path / "config.yaml").read_text()) or {}
    max_steps = (cfg.get("train") or {}).get("max_steps", 0)
    rows = read_metrics(path)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if any(k.startswith("eval_") for k in r)]
    last = train[-1] if train else {}
    latest = latest_checkpoint(path)
    model, model_step = _model_of(path)
    step = max(last.get("step", 0), model_step or 0)
    updated = (path / "metrics.jsonl").stat().st_mtime if (path / "metrics.jsonl").exists() else None
    return {
        "kind": "run",
        "run": str(path),
        "step": step,
        "max_steps": max_steps,
        "progress": step / max_steps if max_steps else 0.0,
        "loss": last.get("loss"),
        "lr": last.get("lr"),
        "samples_per_s": last.get("samples_per_s"),
        "eta_s": last.get("eta_s"),
        "last_eval": {k: v for k, v in evals[-1].items()} if evals else None,
        "checkpoint": str(latest) if latest else None,
        "model": str(model) if model else None,
        "finished": model is not None or (max_steps > 0 and step >= max_steps),
        "failed": read_failure(path),
        "seconds_since_update": (time.time() - updated) if updated else None,
        "evaluations": evaluations(path, *([model] if model else [])),
    }


def _model_status(model: Path) -> dict:
    """A model folder: finished by definition, at the step its trainer_state.json records; its run
    (the parent folder, when it is one) gives the loss and its evaluations are listed too."""
    cfg = yaml.safe_load((model / "config.yaml").read_text()) or {}
    max_steps = (cfg.get("train") or {}).get("max_steps", 0)
    step = _read_json(model / TRAINER_STATE).get("step")
    run = model.parent if (model.parent / "metrics.jsonl").is_file() else None
    train = [r for r in read_metrics(run) if "loss" in r] if run else []
    last = train[-1] if train else {}
    return {"kind": "model", "run": str(run) if run else None, "model": str(model), "step": step,
            "max_steps": max_steps, "progress": 1.0, "loss": last.get("loss"), "lr": last.get("lr"),
            "samples_per_s": last.get("samples_per_s"), "eta_s": None, "last_eval": None, "checkpoint": None,
            "finished": True, "failed": None, "seconds_since_update": None,
            "evaluations": evaluations(*([run, model] if run else [model]))}


def exit_code(status: dict) -> int:
    """0 for a run in progress or finished (or a model), 1 for a run whose last attempt failed."""
    return 1 if status.get("failed") and not status["finished"] else 0


def format_status(status: dict) -> str:
    if status.get("kind") == "model":
        lines = [f"model     {status['model']}: a finished model, "
                 + (f"step {status['step']} of {status['max_steps']}" if status["step"] is not None
                    else "its step not recorded (no trainer_state.json)")
                 + (f" (its run: {status['run']})" if status["run"] else "")]
        if status["loss"] is not None:
            lines.append(f"loss      {status['loss']:.4f} at the run's last log")
        return "\n".join(lines + _evaluation_lines(status))
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
        lines.append("held-out  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in status["last_eval"].items()))
    if status.get("model"):
        lines.append(f"model     {status['model']}")
    if status["checkpoint"] or not status.get("model"):
        lines.append(f"checkpoint {status['checkpoint'] or '(none yet)'}")
    failed = status.get("failed")
    if failed:
        ago = f", {time.time() - failed['time']:.0f} s ago" if isinstance(failed.get("time"), (int, float)) else ""
        lines.append(f"FAILED    at step {failed.get('step', '?')}{ago}: {failed.get('error')}")
        lines.append(f"          {_retry_hint(status)}")
    if status["seconds_since_update"] is not None and not status["finished"] and not failed:
        lines.append(f"last log  {status['seconds_since_update']:.0f} s ago")
    return "\n".join(lines + _evaluation_lines(status))


def _evaluation_lines(status: dict) -> list[str]:
    """One line per evaluation (overall EM, or the Stage 2 parse rate), then its EM per question type."""
    lines = []
    for ev in status.get("evaluations") or []:
        what = [f"{ev['n']} questions" if ev["n"] is not None else None,
                "views removed" if ev["views_removed"] else None,
                "a model trained blind" if ev["trained_blind"] else None,
                f"step {ev['step']}" if ev["step"] is not None else None,
                ", ".join(ev["data"]) if isinstance(ev["data"], list) else ev["data"]]
        score = f"EM {ev['em']:.1f}" if isinstance(ev["em"], (int, float)) else "EM -"
        if isinstance(ev["parse_rate"], (int, float)):
            score += f", layouts parse {ev['parse_rate']:.1f}%"
        lines.append(f"eval      {ev['dir']}: {score} ({'; '.join(w for w in what if w)})")
        qtypes = [f"{q} {em:.1f}" for q, em in ev["by_qtype"].items() if isinstance(em, (int, float))]
        if qtypes:
            lines.append(f"          by qtype: {', '.join(qtypes)}")
    return lines


def _retry_hint(status: dict) -> str:
    """What to run after fixing the cause of a failure."""
    if status["checkpoint"]:
        return "fix the cause, then continue with --resume auto"
    if not status["step"]:
        return "fix the cause, then run the same command again (no step was trained: the folder is reused)"
    return "no checkpoint to resume: --set train.overwrite=true starts over, or choose another --output-dir"
