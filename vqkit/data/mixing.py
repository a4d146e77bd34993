"""Mixing several datasets into one epoch, and sharding an epoch over ranks.

- :class:`MixedDataset`: several corpora mixed by weight (configs/stage1_3d.yaml: ScanQA 0.7, SQA3D 0.3),
  or by VG-LLM's rate (a share of each source's own samples). Each epoch is a fixed-length list of
  (source, record) positions drawn by weight from (seed, epoch); without weights it is the plain
  concatenation (validation: every record exactly once).
- :class:`ShardedSampler`: shuffles per (seed, epoch) and gives rank r the positions r, r + W, ...
  (like ``torch.utils.data.DistributedSampler``: the list is padded by repeating its start so every
  rank gets the same count; padded positions are flagged in ``meta["is_padding"]`` so evaluation
  can drop them). It yields ``(epoch, index, is_padding)`` so datasets in persistent workers see the
  epoch without a ``set_epoch`` call reaching them. Plain integer indices (e.g. from
  ``DistributedSampler``) work too and use the dataset's own ``set_epoch`` value. Over a weighted mix
  the shuffle is stratified (:func:`stratified_order`): every stretch of the epoch, a batch or the
  first steps, holds each source's share.
- :func:`source_table` / :func:`describe_sources`: what each source gives an epoch (printed when
  training starts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler

from vqkit.data.schema import LoadReport
from vqkit.errors import ConfigError, DataError


def _index(item: Any, default_epoch: int) -> tuple[int, int, bool]:
    """(epoch, index, is_padding) from an int or a ShardedSampler tuple."""
    if isinstance(item, (tuple, list)):
        return int(item[0]), int(item[1]), bool(item[2]) if len(item) > 2 else False
    return default_epoch, int(item), False


class MixedDataset(Dataset):
    """Several datasets as one: mixed by weight per epoch, or concatenated (``weights=None``).

    With weights, epoch e is a list of ``samples_per_epoch`` (default: the sum of the sources'
    sizes) positions; source k gets round(L * w_k / sum(w)) of them (largest remainder), filled
    from seeded permutations of its records, so a record repeats within an epoch only when its
    source's share exceeds its size. The list is a pure function of (seed, epoch).
    """

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float] | None = None, *,
                 samples_per_epoch: int | None = None, seed: int = 0):
        if not datasets:
            raise DataError("no data sources")
        self.datasets = list(datasets)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.seed = int(seed)
        sizes = [len(d) for d in self.datasets]
        self.length = int(samples_per_epoch) if samples_per_epoch else sum(sizes)
        if self.weights is not None:
            if len(self.weights) != len(self.datasets) or min(self.weights) <= 0:
                raise ConfigError("data source weights must be one positive number per source")
        self.offsets = np.cumsum([0, *sizes])
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length if self.weights is not None else int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for d in self.datasets:
            d.set_epoch(epoch)

    @property
    def report(self) -> LoadReport:
        total = LoadReport()
        for d in self.datasets:
            total.merge(d.report)
        return total

    @property
    def num_replaced(self) -> int:
        return sum(d.num_replaced for d in self.datasets)

    def counts(self) -> list[int]:
        """Samples per source in one epoch."""
        if self.weights is None:
            return [len(d) for d in self.datasets]
        w = np.asarray(self.weights) / sum(self.weights)
        exact = w * self.length
        counts = np.floor(exact).astype(int)
        # Largest remainder, ties to the earlier source, so counts always sum to the length.
        order = sorted(range(len(w)), key=lambda k: (-(exact[k] - counts[k]), k))
        for k in order[: self.length - counts.sum()]:
            counts[k] += 1
        return counts.tolist()

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(source [L], record [L]) of every position of ``epoch``."""
        if epoch in self._cache:
            return self._cache[epoch]
        sources, records = [], []
        for k, (d, n) in enumerate(zip(self.datasets, self.counts(), strict=True)):
            if self.weights is None:
                idx = np.arange(len(d))
            else:
                rng = np.random.default_rng((self.seed, epoch, k, 0x3D))
                reps = math.ceil(n / len(d))
                idx = np.concatenate([rng.permutation(len(d)) for _ in range(reps)])[:n]
            sources.append(np.full(len(idx), k))
            records.append(idx)
        plan = (np.concatenate(sources), np.concatenate(records))
        if len(self._cache) > 4:
            self._cache.clear()
        self._cache[epoch] = plan
        return plan

    def locate(self, index: int, epoch: int | None = None) -> tuple[int, int]:
        """(source, record) at position ``index`` of ``epoch``."""
        src, rec = self.epoch_plan(self.epoch if epoch is None else epoch)
        return int(src[index]), int(rec[index])

    def item_encoding(self, item, collator) -> dict[str, Any]:
        """A sampler item's tokens and labels as ``collator`` lays them out (:meth:`RecordDataset.planned`)."""
        epoch, index, _ = _index(item, self.epoch)
        k, r = self.locate(index, epoch)
        return self.datasets[k].planned(r, epoch, index, collator)

    def item_tokens(self, item, collator) -> int:
        return len(self.item_encoding(item, collator)["input_ids"])

    def __getitem__(self, item) -> dict[str, Any]:
        epoch, index, is_padding = _index(item, self.epoch)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mix of {len(self)} samples")
        k, r = self.locate(index, epoch)
        sample = self.datasets[k].get(r, epoch, key=index)
        sample["meta"]["is_padding"] = is_padding
        return sample


class ShardedSampler(Sampler):
    """Distributed, epoch-aware sampler; yields ``(epoch, index, is_padding)``.

    The order is a permutation from (seed, epoch) when ``shuffle`` (else 0..N-1). Like
    ``DistributedSampler``: with ``drop_last`` the tail that does not divide by ``world_size`` is
    dropped, otherwise the list is padded by repeating its start and those positions are flagged.
    Ranks get disjoint slices ``order[rank::world_size]``; their union is the whole epoch.
    """

    def __init__(self, length: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, epoch: int = 0, strata: np.ndarray | None = None):
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world_size {world_size}")
        self.length = length
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = epoch
        self.strata = strata
        """The source of each position (a weighted mix): the shuffle then spreads every source evenly
        over the epoch, so any stretch of it (a batch, the first steps) holds each source's share."""
        if drop_last:
            self.num_samples = length // world_size
        else:
            self.num_samples = math.ceil(length / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(index [num_samples], is_padding [num_samples]) of this rank for the current epoch."""
        if self.shuffle and self.strata is not None:
            order = stratified_order(self.strata, np.random.default_rng((self.seed, self.epoch, 0x5A)))
        elif self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch, 0x5A)).permutation(self.length)
        else:
            order = np.arange(self.length)
        total = self.num_samples * self.world_size
        padding = np.zeros(total, dtype=bool)
        if total > self.length:
            extra = total - self.length
            order = np.concatenate([order, np.resize(order, extra)])
            padding[self.length:] = True
        order, padding = order[:total], padding[:total]
        return order[self.rank::self.world_size], padding[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int, bool]]:
        idx, pad = self.indices()
        epoch = self.epoch
        return iter([(epoch, int(i), bool(p)) for i, p in zip(idx, pad, strict=True)])


def stratified_order(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shuffle of positions 0..N-1 in which each stratum's positions are spread evenly: stratum s of
    n_s positions takes the places (j + u_j) / n_s (u_j uniform in [0, 1)) in a seeded order, and all are
    sorted by place, so the first m positions hold m * n_s / N of stratum s to within about one."""
    strata = np.asarray(strata)
    place = np.empty(len(strata))
    for s in np.unique(strata):
        pos = rng.permutation(np.flatnonzero(strata == s))
        place[pos] = (np.arange(len(pos)) + rng.random(len(pos))) / len(pos)
    return np.argsort(place, kind="stable")


def source_table(dataset: Dataset) -> list[dict[str, Any]]:
    """Per source of a built dataset: its name, samples (a conversation of several turns is one),
    records, conversation samples read, samples drawn per epoch and their share of the epoch."""
    parts = getattr(dataset, "datasets", [dataset])
    counts = dataset.counts() if isinstance(dataset, MixedDataset) else [len(d) for d in parts]
    total = max(1, sum(counts))
    return [{"name": d.name, "samples": len(d), "records": len(d.records),
             "conversations": d.report.num_conversations, "skipped": d.report.num_skipped,
             "per_epoch": int(n), "share": n / total} for d, n in zip(parts, counts, strict=True)]


def describe_sources(dataset: Dataset) -> str:
    """One line per source of :func:`source_table`, as training prints it when it starts."""
    lines = []
    for row in source_table(dataset):
        read = f"{row['samples']} samples"
        if row["conversations"]:
            read += f" ({row['conversations']} conversation samples, {row['records']} turns)"
        if row["skipped"]:
            read += f", {row['skipped']} skipped (data.on_error: skip)"
        lines.append(f"data source {row['name']}: {read} -> {row['per_epoch']} per epoch "
                     f"({100 * row['share']:.1f}%)")
    return "\n".join(lines)
