"""What a training micro-batch holds in tokens, for ``vqkit plan``: measured on the first training records
as the collator lays them out (turns, views, geometry tokens), without loading images.

- Padded batches: every sample is planned at ``data.max_length`` tokens (the longest it can be), and the
  LM head runs at the positions where some sample of the batch has a label (:func:`answer_positions`).
- Packed rows (``data.packing``): a row holds its samples' own tokens, and the LM head runs at their
  label tokens only, so a sample costs its mean length with logits at its mean label tokens
  (:func:`packed_sample`); a micro-batch of ``train.tokens_per_batch`` tokens holds that many tokens
  whatever its samples.
"""

from __future__ import annotations

from vqkit.config.schema import Config
from vqkit.data.collate import IGNORE_INDEX, Collator
from vqkit.data.dataset import RecordDataset
from vqkit.data.packing import sample_token_stats
from vqkit.data.schema import load_records
from vqkit.errors import DataError


def first_samples(cfg: Config, tokenizer, max_records: int = 512) -> tuple[RecordDataset, Collator] | None:
    """The first ``max_records`` records of the first training source as a training dataset, and the
    collator that lays them out; None when the data or the tokenizer cannot be read here."""
    if tokenizer is None or not cfg.data.train:
        return None
    try:
        records = load_records(cfg.data.train[0].path, check_files=False, limit=max_records)
    except (DataError, OSError):
        return None
    if not records:
        return None
    dataset = RecordDataset(records, cfg.data, train=True, seed=cfg.train.seed)
    return dataset, Collator(tokenizer, cfg.model, cfg.data, mode="train", blind=cfg.data.blind)


def answer_positions(cfg: Config, tokenizer, batch_size: int, max_records: int = 512) -> int | None:
    """How many positions of a padded training batch get logits: ``VQModel.forward`` runs the LM head only
    where some sample of the batch has a label (answers and their end tokens), so a right-padded batch
    needs the span from the earliest labelled position to the latest. Measured on the first
    ``max_records`` records (epoch 0's views and turns) in batches of ``batch_size``; None when they
    cannot be read here."""
    first = first_samples(cfg, tokenizer, max_records)
    if first is None:
        return None
    dataset, collator = first
    spans = []
    for item in range(len(dataset)):
        labels = dataset.item_encoding(item, collator)["labels"]
        labelled = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        spans.append((labelled[0] if labelled else len(labels), len(labels)))
    size = max(1, batch_size)
    return max(max(end for _, end in chunk) - min(start for start, _ in chunk)
               for chunk in (spans[i:i + size] for i in range(0, len(spans), size)))


def packed_sample(cfg: Config, tokenizer, max_records: int = 512) -> dict[str, float] | None:
    """A packed row's share per sample (:func:`vqkit.data.packing.sample_token_stats` of the first
    records): ``mean_tokens``, ``mean_label_tokens`` (the LM head's positions), ``max_tokens``; None when
    the data cannot be read here."""
    first = first_samples(cfg, tokenizer, max_records)
    return None if first is None else sample_token_stats(*first, limit=max_records)


__all__ = ["answer_positions", "first_samples", "packed_sample"]
