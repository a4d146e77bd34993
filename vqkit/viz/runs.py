"""Training curves from a run's ``metrics.jsonl``, evaluation results of several runs side by side, and
which run a notebook evaluates (:func:`run_to_evaluate`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vqkit.errors import CheckpointError, DataError
from vqkit.train.logging import read_metrics
from vqkit.viz.tables import HTMLTable


def plot_training_curves(run_dir: str | os.PathLike):
    """Loss (and held-out loss when logged) and both learning rates against the step. Returns the Figure."""
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir, missing_ok=False)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    if not train:
        raise DataError(f"{run_dir}: the metrics log has no training rows yet")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.plot([r["step"] for r in train], [r["loss"] for r in train], "o-", ms=3, label="train loss")
    if evals:
        a.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "s--", ms=4, label="held-out loss")
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.set_title("loss")
    a.grid(True, lw=0.3)
    a.legend()
    b.plot([r["step"] for r in train], [r.get("lr") for r in train], "o-", ms=3, label="lr (LLM / LoRA)")
    if any("proj_lr" in r for r in train):
        b.plot([r["step"] for r in train], [r.get("proj_lr") for r in train], "x--", ms=4, label="proj_lr")
    b.set_xlabel("step")
    b.set_ylabel("learning rate")
    b.set_title("learning rate")
    b.grid(True, lw=0.3)
    b.legend()
    fig.tight_layout()
    return fig


#: The run ``make demo`` trains: what notebook 04 evaluates when its own run is not there yet.
DEMO_RUN = "runs/demo"


def run_to_evaluate(run_dir: str | os.PathLike, data_file: str | None = None, *, data_dir: str | None = None,
                    fallback_run: str | os.PathLike | None = DEMO_RUN) -> tuple[Path, str]:
    """The run whose ``final/`` model notebook 04 evaluates, and the questions it asks: ``(run, file)``.

    ``run_dir`` when its model exists, with ``data_file`` or ``{data_dir}/val.jsonl``. Otherwise the
    demo's run (``make demo``) when it exists, with ``data_file`` or that run's own validation file,
    saying so in one line. Otherwise a one-line CheckpointError naming what to run first.
    """
    from vqkit.config.io import load_config

    run = Path(run_dir)
    if (run / "final").is_dir():
        return run, data_file or f"{data_dir}/val.jsonl"
    fallback = Path(fallback_run) if fallback_run is not None else None
    if fallback is not None and (fallback / "final").is_dir() and (fallback / "config.yaml").is_file():
        val = [source.path for source in load_config(fallback / "config.yaml").data.val]
        if data_file or val:
            print(f"{run}: no model yet (notebooks 01 and 03 train it); evaluating the demo's {fallback} instead")
            return fallback, data_file or val[0]
    raise CheckpointError(f"{run / 'final'}: no model yet. Run notebooks 01 and 03 first (they write {data_dir} "
                          f"and {run}), or `make demo` (runs/demo)")


def _load_metrics(m: dict | str | os.PathLike) -> dict:
    if isinstance(m, dict):
        return m
    path = Path(m)
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found")
    return json.loads(path.read_text())


def metrics_table(runs: dict[str, dict | str | os.PathLike]) -> HTMLTable:
    """Overall and per-qtype EM / refined EM of several evaluations side by side.

    ``runs``: name -> metrics dict (as ``vqkit eval`` writes) or a path to ``metrics.json`` / its folder.
    """
    loaded = {name: _load_metrics(m) for name, m in runs.items()}
    qtypes = sorted({q for m in loaded.values() for q in m.get("by_qtype", {})})
    columns = ["split"] + [f"{name} {k}" for name in loaded for k in ("EM", "EM-R")] + ["n"]
    rows = []
    for label, qtype in [("overall", None)] + [(f"qtype {q}", q) for q in qtypes]:
        row: list[Any] = [label]
        n = None
        for m in loaded.values():
            block = (m.get("overall") if qtype is None else m.get("by_qtype", {}).get(qtype)) or {}
            row += [block.get("em"), block.get("em_refined")]
            n = n or block.get("n")
        rows.append(row + [n])
    for name, m in loaded.items():
        rp = m.get("roomplan")
        if rp:
            f1 = {k: rp[k].get("f1@0.5") for k in ("walls", "doors", "windows", "objects")
                  if isinstance(rp.get(k), dict)}
            rows.append([f"{name} roomplan F1@0.5"] + [None] * (len(columns) - 2) + [rp.get("n")])
            rows[-1][1] = ", ".join(f"{k} {v:.1f}" if v is not None else f"{k} -" for k, v in f1.items())
    return HTMLTable(columns, rows)


def plot_qtype_bars(runs: dict[str, dict | str | os.PathLike], metric: str = "em"):
    """Grouped bars of ``metric`` (em or em_refined) per qtype and overall, one colour per run."""
    import matplotlib.pyplot as plt

    loaded = {name: _load_metrics(m) for name, m in runs.items()}
    qtypes = sorted({q for m in loaded.values() for q in m.get("by_qtype", {})})
    groups = ["overall"] + qtypes
    width = 0.8 / max(1, len(loaded))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups) + 2), 3.8))
    for k, (name, m) in enumerate(loaded.items()):
        values = [(m.get("overall") or {}).get(metric)] + [m.get("by_qtype", {}).get(q, {}).get(metric) for q in qtypes]
        xs = np.arange(len(groups)) + (k - (len(loaded) - 1) / 2) * width
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=name)
        for bar, v in zip(bars, values, strict=True):
            if v is not None:
                ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7)  # one decimal, as the tables: 37.5, not 38
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel({"em": "EM (%)", "em_refined": "refined EM (%)"}.get(metric, metric))
    ax.set_ylim(0, 105)
    ax.legend()
    ax.grid(True, axis="y", lw=0.3)
    fig.tight_layout()
    return fig
