"""Training: ``run(cfg)`` (:mod:`vqkit.train.recipe`) and its parts.

- :mod:`~vqkit.train.recipe`: the recipe (setup / train / cleanup) and :func:`run`.
- :mod:`~vqkit.train.step`: one optimizer step, shared with ``vqkit bench`` and ``vqkit plan``.
- :mod:`~vqkit.train.accelerator`: accelerate / DeepSpeed setup, gathering trainable weights.
- :mod:`~vqkit.train.checkpoint`: atomic, resumable checkpoints.
- :mod:`~vqkit.train.logging`: metrics.jsonl and TensorBoard, and the reader of metrics.jsonl.
- :mod:`~vqkit.train.run_dir`, :mod:`~vqkit.train.optim`: the run folder, AdamW and the schedule.

``python -m vqkit.train`` is ``vqkit-train``. Names are imported lazily, so reading a run's logs
(``vqkit.train.logging``) does not load accelerate.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"Recipe": "vqkit.train.recipe", "TrainResult": "vqkit.train.recipe", "run": "vqkit.train.recipe"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vqkit.train' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = list(_EXPORTS)
