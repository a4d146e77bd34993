"""Packing (``data.packing``) and micro-batches measured in tokens (``train.tokens_per_batch``).

- :func:`pack_tokens`: a training micro-batch's samples one after another in one row of tokens, no
  padding: ``input_ids`` / ``labels`` / ``attention_mask`` / ``position_ids`` [1, T] (positions restart at 0
  with every sample), ``cu_seqlens`` [N + 1] (where each sample starts: cumulative token counts) and, with
  ``data.turns``, ``turn_of`` [1, T]. The vision half of the batch is unchanged (each sample's views, as
  :func:`vqkit.data.collate.collate_views` pads them), so the encoder and projector see each sample as
  before; the model keeps attention inside each sample (:mod:`vqkit.models.llm_attention`), and the
  token-weighted loss is the same sum over the same label tokens.
- :class:`TokenBatchSampler`: micro-batches of at most ``train.tokens_per_batch`` tokens from the
  sampler's order, chosen by first-fit-decreasing over a bounded buffer (``data.packing_buffer``
  samples): the buffer's samples are placed, longest first, into the first micro-batch with room, the
  fullest micro-batch is emitted (its samples in the sampler's order), the buffer refills, and so on; at
  the end of the epoch the rest are emitted. A sample's tokens come from its record and its per-item
  random draws (views, geometry dropout, turns: :meth:`vqkit.data.dataset.RecordDataset.planned`),
  without loading images, so the micro-batches are a function of (seed, epoch, rank) and a resumed run
  skips exactly the ones it had trained on. Packed, a micro-batch costs the sum of its samples' tokens;
  padded, its number of samples times the longest (so it also gathers samples of similar length).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from vqkit.errors import ConfigError

log = logging.getLogger("vqkit.data")

IGNORE_INDEX = -100


def pack_tokens(encodings: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """One row of the encoded samples (``Collator.encode_sample`` in train mode), in their order."""
    ids, labels, positions, turns, bounds = [], [], [], [], [0]
    multi_turn = any(max(e["turn_of"]) > 1 for e in encodings)
    for e in encodings:
        n = len(e["input_ids"])
        ids += e["input_ids"]
        # A sample's first token is never a target (nothing before it in its own row); packed, it must not
        # become the target of the previous sample's last position either.
        labels += [IGNORE_INDEX] + e["labels"][1:]
        positions += range(n)
        turns += e["turn_of"]
        bounds.append(bounds[-1] + n)
    out = {"input_ids": torch.tensor([ids], dtype=torch.long),
           "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
           "labels": torch.tensor([labels], dtype=torch.long),
           "position_ids": torch.tensor([positions], dtype=torch.long),
           "cu_seqlens": torch.tensor(bounds, dtype=torch.long)}
    if multi_turn:
        out["turn_of"] = torch.tensor([turns], dtype=torch.long)
    return out


def is_packed(batch: dict) -> bool:
    """Whether a collated batch is packed (:func:`pack_tokens`)."""
    return batch.get("cu_seqlens") is not None


def count_per_sample(batch: dict, flags: torch.Tensor) -> list[int]:
    """How many of ``flags`` [B, L] (bool) each sample of the batch holds: per row, or per sample of a
    packed row (its ``cu_seqlens``)."""
    if not is_packed(batch):
        return flags.sum(dim=1).tolist()
    counts = torch.cat([flags.new_zeros(1, dtype=torch.long), flags.flatten().long().cumsum(0)])
    bounds = batch["cu_seqlens"].to(counts.device)
    return (counts[bounds[1:]] - counts[bounds[:-1]]).tolist()


def micro_batch_cost(lengths: Sequence[int], packed: bool) -> int:
    """Tokens a micro-batch of samples of ``lengths`` takes: their sum packed, else count x the longest."""
    if not lengths:
        return 0
    return sum(lengths) if packed else len(lengths) * max(lengths)


def first_fit_decreasing(lengths: Sequence[int], budget: int, packed: bool) -> list[list[int]]:
    """Bins (lists of indices into ``lengths``) of at most ``budget`` tokens each (:func:`micro_batch_cost`):
    the longest first, each into the first bin with room (ties in input order). A sample longer than the
    budget gets a bin of its own."""
    bins: list[list[int]] = []
    sums: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = lengths[i]
        for b, members in enumerate(bins):
            # Sorted longest first: a bin's first member is its longest.
            cost = sums[b] + n if packed else (len(members) + 1) * lengths[members[0]]
            if cost <= budget:
                members.append(i)
                sums[b] += n
                break
        else:
            bins.append([i])
            sums.append(n)
    return bins


def sample_token_stats(dataset, collator, limit: int = 512) -> dict[str, float]:
    """Tokens and label tokens (targets: the first one is never one) of the first ``limit`` training
    samples as ``collator`` lays them out, from their records without loading images: ``mean_tokens``,
    ``max_tokens``, ``mean_label_tokens`` (what a packed row holds per sample; ``vqkit plan``)."""
    tokens, labels = [], []
    for item in range(min(limit, len(dataset))):
        enc = dataset.item_encoding(item, collator)
        tokens.append(len(enc["input_ids"]))
        labels.append(sum(label != IGNORE_INDEX for label in enc["labels"][1:]))
    if not tokens:
        return {"mean_tokens": 0.0, "max_tokens": 0, "mean_label_tokens": 0.0, "samples": 0}
    return {"mean_tokens": sum(tokens) / len(tokens), "max_tokens": max(tokens),
            "mean_label_tokens": sum(labels) / len(labels), "samples": len(tokens)}


class TokenBatchSampler(Sampler):
    """Micro-batches (lists of the sampler's items) of at most ``budget`` tokens (module docstring).

    Args:
        sampler: yields the items of an epoch (``ShardedSampler``: ``(epoch, index, is_padding)``).
        length_of: an item's tokens.
        budget: ``train.tokens_per_batch``.
        packed: cost of a micro-batch packed (the sum) or padded (count x longest).
        buffer: samples looked ahead (``data.packing_buffer``).
    """

    def __init__(self, sampler, length_of: Callable[[Any], int], budget: int, *, packed: bool, buffer: int = 64):
        if budget < 1 or buffer < 1:
            raise ConfigError("tokens_per_batch and data.packing_buffer must be >= 1")
        self.sampler = sampler
        self.length_of = length_of
        self.budget, self.packed, self.buffer = int(budget), bool(packed), int(buffer)
        self._warned = False
        self._len: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _length(self, item) -> int:
        n = int(self.length_of(item))
        if n > self.budget and not self._warned:
            self._warned = True
            log.warning("a training sample of %d tokens exceeds train.tokens_per_batch=%d: it makes a micro-batch "
                        "of its own (raise tokens_per_batch to at least data.max_length)", n, self.budget)
        return n

    def __iter__(self) -> Iterator[list]:
        pending: list[tuple[Any, int]] = []
        items = iter(self.sampler)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.buffer:
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((item, self._length(item)))
            if not pending:
                return
            bins = first_fit_decreasing([n for _, n in pending], self.budget, self.packed)
            if exhausted:
                for members in bins:
                    yield [pending[i][0] for i in sorted(members)]
                return
            costs = [micro_batch_cost([pending[i][1] for i in members], self.packed) for members in bins]
            chosen = set(bins[max(range(len(bins)), key=lambda b: (costs[b], -b))])
            yield [pending[i][0] for i in sorted(chosen)]
            pending = [p for i, p in enumerate(pending) if i not in chosen]

    def __len__(self) -> int:
        """Micro-batches of the current epoch (computed once per epoch: every sample's length)."""
        epoch = getattr(self.sampler, "epoch", 0)
        if self._len is None or self._len[0] != epoch:
            self._len = (epoch, sum(1 for _ in self))
        return self._len[1]


__all__ = ["TokenBatchSampler", "count_per_sample", "first_fit_decreasing", "is_packed", "micro_batch_cost",
           "pack_tokens", "sample_token_stats"]
