"""Evaluation: generation over a record file, metrics, result files, and asking about photos.

- :mod:`~vqkit.eval.generate`: :func:`evaluate` (batched generation, sharded over ranks, gathered once).
- :mod:`~vqkit.eval.metrics`: EM, refined EM, BLEU / METEOR / ROUGE-L / CIDEr, SQA3D question types.
- :mod:`~vqkit.eval.results`: prediction rows, ``metrics.json``, re-scoring, the printed table.
- :mod:`~vqkit.eval.loss`: teacher-forced answer loss (periodic eval; views vs shuffled views).
- :mod:`~vqkit.eval.ask`: answer a question about a set of photos (``vqkit ask``).

From a notebook::

    from vqkit.eval import evaluate, write_results, format_table, rescore, score
    predictions, metrics = evaluate(model, cfg, "data/synth/val.jsonl")   # blind=True: its views removed
    print(format_table(metrics))

    from vqkit.eval.ask import ask
    ask(model, ["a.jpg", "b.jpg"], "How many chairs are there?")

Names are imported lazily so that ``import vqkit.eval.metrics`` does not pull in torch.
"""

from __future__ import annotations

from vqkit.utils.lazy import lazy_exports

_EXPORTS = {
    "score": "vqkit.eval.metrics",
    "exact_match": "vqkit.eval.metrics",
    "refined_match": "vqkit.eval.metrics",
    "normalize_answer": "vqkit.eval.metrics",
    "sqa3d_qtype": "vqkit.eval.metrics",
    "evaluate": "vqkit.eval.generate",
    "evaluate_loss_and_em": "vqkit.eval.loss",
    "answer_losses": "vqkit.eval.loss",
    "compute_metrics": "vqkit.eval.results",
    "write_results": "vqkit.eval.results",
    "read_predictions": "vqkit.eval.results",
    "rescore": "vqkit.eval.results",
    "format_table": "vqkit.eval.results",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
