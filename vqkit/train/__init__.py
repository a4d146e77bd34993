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

from vqkit.utils.lazy import lazy_exports

_EXPORTS = {"Recipe": "vqkit.train.recipe", "TrainResult": "vqkit.train.recipe", "run": "vqkit.train.recipe"}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
