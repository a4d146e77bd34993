"""Evaluation: answer metrics (``metrics``), ``vqkit eval`` (``run``) and ``vqkit ask`` (``ask``).

From a notebook::

    from vqkit.eval import evaluate, write_results, format_table, rescore, score
    predictions, metrics = evaluate(model, cfg, "data/synth/val.jsonl")   # blind=True: the baseline
    print(format_table(metrics))

    from vqkit.eval.ask import ask      # (the submodule shares the name, so import it from there)
    ask(model, ["a.jpg", "b.jpg"], "How many chairs are there?")

Names are imported lazily so that ``import vqkit.eval.metrics`` does not pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "score": "vqkit.eval.metrics",
    "exact_match": "vqkit.eval.metrics",
    "refined_match": "vqkit.eval.metrics",
    "normalize_answer": "vqkit.eval.metrics",
    "sqa3d_qtype": "vqkit.eval.metrics",
    "evaluate": "vqkit.eval.run",
    "evaluate_loss_and_em": "vqkit.eval.run",
    "compute_metrics": "vqkit.eval.run",
    "write_results": "vqkit.eval.run",
    "read_predictions": "vqkit.eval.run",
    "rescore": "vqkit.eval.run",
    "format_table": "vqkit.eval.run",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vqkit.eval' has no attribute {name!r}")


__all__ = list(_EXPORTS)
