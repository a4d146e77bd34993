"""Datasets and loaders: records -> samples (views chosen, images loaded, K adjusted) -> batches.

- :class:`RecordDataset`: one corpus. ``dataset[i]`` loads record i's chosen views. View choice and
  view dropout come from ``numpy.random.default_rng((seed, epoch, i))`` only, so a sample is the same
  in every process, worker count and run with the same seed and epoch.
- :class:`MixedDataset`: several corpora mixed by weight (configs/stage1_3d.yaml: ScanQA 0.7, SQA3D 0.3). Each
  epoch is a fixed-length list of (source, record) positions drawn by weight from (seed, epoch);
  without weights it is the plain concatenation (validation: every record exactly once).
- :class:`ShardedSampler`: shuffles per (seed, epoch) and gives rank r the positions r, r + W, ...
  (like ``torch.utils.data.DistributedSampler``: the list is padded by repeating its start so every
  rank gets the same count; padded positions are flagged in ``meta["is_padding"]`` so evaluation
  can drop them). It yields ``(epoch, index, is_padding)`` so datasets in persistent workers see the
  epoch without a ``set_epoch`` call reaching them. Plain integer indices (e.g. from
  ``DistributedSampler``) work too and use the dataset's own ``set_epoch`` value.
- :func:`build_dataset` and :func:`build_dataloader` assemble them from the config.

A sample is a dict: ``images`` float32 [V, 3, H, W] in [0, 1]; ``K`` [V, 3, 3] (pixel K of the
resized image, zeros without geometry); ``R`` [V, 3, 3]; ``t`` [V, 3]; ``depth_hist`` [V, B]
(zeros where absent); ``has_geometry`` bool; ``pixel_box`` [V, 4] (x0, y0, x1, y1 of each view's own
pixels in the sample's padded frame); optional ``depths`` [V, H, W] metres; ``question``,
``situation``, ``answer`` (the target text); in training with ``data.turns > 1``, ``turns``: up to
``turns - 1`` other records with the same views, as question / situation / answer dicts in a seeded
order; ``meta`` (see ``Record.meta``, plus ``views``, the
chosen view indices, ``replaced_from`` when a corrupt item was replaced, ``is_padding``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vqkit.cameras import depth_histogram
from vqkit.data.collate import Collator
from vqkit.data.feature_cache import attach_feature_cache
from vqkit.data.images import UNLABELLED, load_depth, load_semantics, load_views, pad_to_common, plan_resize
from vqkit.data.schema import LoadReport, Record, load_records
from vqkit.data.views import choose_views
from vqkit.errors import ConfigError, DataError
from vqkit.vggt.predicted_geometry import view_boxes

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import Config, DataConfig, GeometryConfig

log = logging.getLogger("vqkit.data")

# How many other records a corrupt item may try before giving up (skip mode).
MAX_REPLACEMENTS = 16


def _index(item: Any, default_epoch: int) -> tuple[int, int, bool]:
    """(epoch, index, is_padding) from an int or a ShardedSampler tuple."""
    if isinstance(item, (tuple, list)):
        return int(item[0]), int(item[1]), bool(item[2]) if len(item) > 2 else False
    return default_epoch, int(item), False


class RecordDataset(Dataset):
    """One validated corpus; ``dataset[i]`` -> sample dict (module docstring).

    Args:
        records: validated records (``vqkit.data.schema.load_records``).
        data_cfg: image size, resize mode, view sampling, dropout, depth loading, on_error.
        train: training behaviour (random view sampling, view dropout).
        seed: base of every per-item random generator.
        depth_bins / max_depth: width of zero ``depth_hist`` rows, histogram of loaded depth maps.
        name: label for logs and ``meta["source_name"]``.
        stream: an int mixed into the per-item seed so sources of a mix draw independently.
    """

    def __init__(self, records: Sequence[Record], data_cfg: DataConfig, *, train: bool, seed: int = 0,
                 depth_bins: int = 16, max_depth: float = 10.0, name: str = "", stream: int = 0,
                 report: LoadReport | None = None):
        if not records:
            raise DataError(f"{name or 'dataset'}: no usable records")
        self.records = list(records)
        self.cfg = data_cfg
        self.train = train
        self.seed = int(seed)
        self.depth_bins = depth_bins
        self.max_depth = max_depth
        self.name = name
        self.stream = stream
        self.report = report or LoadReport(num_loaded=len(self.records))
        self.epoch = 0
        self.num_replaced = 0
        """Corrupt items replaced in this process (each worker counts its own; batches carry
        ``num_skipped``)."""
        self._bad: set[int] = set()
        # Records that share their views (one room's questions), for data.turns > 1.
        self._same_views: dict[tuple[str, ...], list[int]] = {}
        if train and data_cfg.turns > 1:
            for i, r in enumerate(self.records):
                self._same_views.setdefault(tuple(r.images), []).append(i)
        self.feature_cache = None
        """A ``vqkit.data.feature_cache.FeatureCache`` (set by ``attach_feature_cache``): samples then carry cached
        encoder ``features`` [V, P, C] and ``image_hw`` instead of ``images``."""

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (ShardedSampler passes the epoch with each index)."""
        self.epoch = int(epoch)

    def __getitem__(self, item) -> dict[str, Any]:
        epoch, index, is_padding = _index(item, self.epoch)
        sample = self.get(index, epoch, key=index)
        sample["meta"]["is_padding"] = is_padding
        return sample

    def rng(self, epoch: int, key: int, attempt: int = 0) -> np.random.Generator:
        """The generator of item ``key`` in ``epoch``: a function of (seed, stream, epoch, key) only."""
        return np.random.default_rng((self.seed, self.stream, epoch, key, attempt))

    def get(self, index: int, epoch: int, key: int) -> dict[str, Any]:
        """Load record ``index``; ``key`` seeds its randomness (the position in a mixed epoch).

        In skip mode a record whose files cannot be decoded is replaced by another record chosen
        from (seed, epoch, key), so the replacement is the same in every run.
        """
        if not 0 <= index < len(self.records):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self.records)} records")
        tried = index
        for attempt in range(MAX_REPLACEMENTS + 1):
            if tried not in self._bad:
                try:
                    sample = self._load(self.records[tried], self.rng(epoch, key, attempt))
                    if tried != index:
                        sample["meta"]["replaced_from"] = self.records[index].id
                        self.num_replaced += 1
                    return sample
                except DataError as e:
                    rec = self.records[tried]
                    if self.cfg.on_error == "raise":
                        raise DataError(f"{rec.where}: record '{rec.id}': {e}") from None
                    self._bad.add(tried)
                    log.warning("%s: skipping record '%s' whose files cannot be decoded: %s",
                                rec.where, rec.id, e)
            tried = int(self.rng(epoch, key, attempt + 1).integers(len(self.records)))
        raise DataError(f"{self.name}: {MAX_REPLACEMENTS} records in a row could not be decoded "
                        f"(last: {self.records[tried].where}); the corpus looks broken")

    def _load(self, rec: Record, rng: np.random.Generator) -> dict[str, Any]:
        cfg = self.cfg
        views = choose_views(rec.num_views, cfg.num_views, cfg.view_sampling, cfg.view_dropout,
                             self.train, rng)
        geometry = rec.geometry
        # Drawn only when asked for, so runs without geometry dropout keep their random streams.
        if geometry is not None and self.train and cfg.geometry_dropout > 0 and rng.random() < cfg.geometry_dropout:
            geometry = None
        features = None
        if self.feature_cache is not None:
            # Cached encoder features of the chosen views (vqkit.data.feature_cache); K follows the same resize
            # plan and centre padding (to the cached set's common size) that the images had.
            features, sizes, hw = self.feature_cache.features(rec, views)
            plans = [plan_resize(w, h, cfg.image_size, cfg.resize_mode) for w, h in sizes]
            Ks_shift = np.array([[(hw[1] - p.out[0]) // 2, (hw[0] - p.out[1]) // 2] for p in plans])
        else:
            images, plans, Ks_shift = load_views([rec.images[v] for v in views], cfg.image_size, cfg.resize_mode,
                                                 fields=[f"images[{v}]" for v in views])
        V = len(views)
        sample: dict[str, Any] = {
            **({"features": features, "image_hw": hw} if features is not None else {"images": torch.stack(images)}),
            "pixel_box": torch.from_numpy(view_boxes(plans, Ks_shift)),  # each view's own pixels (not padding)
            "R": torch.zeros(V, 3, 3), "t": torch.zeros(V, 3), "K": torch.zeros(V, 3, 3),
            "depth_hist": torch.zeros(V, self.depth_bins),
            "has_geometry": geometry is not None,
        }
        if geometry is not None:
            geo = geometry.select(views)
            sample["R"] = torch.from_numpy(geo.R.astype(np.float32))
            sample["t"] = torch.from_numpy(geo.t.astype(np.float32))
            K = np.stack([p.intrinsics(k) for p, k in zip(plans, geo.K)])
            K[:, 0, 2] += Ks_shift[:, 0]
            K[:, 1, 2] += Ks_shift[:, 1]
            sample["K"] = torch.from_numpy(K.astype(np.float32))
            if geo.depth_hist is not None:
                sample["depth_hist"] = torch.from_numpy(geo.depth_hist.astype(np.float32))
        if cfg.load_depth and rec.depths is not None:
            depths = [load_depth(rec.depths[v], p, field=f"depths[{v}]") for v, p in zip(views, plans)]
            depths = pad_to_common(depths, fill=0.0, shifts=Ks_shift)[0]
            sample["depths"] = torch.stack(depths)
            if geometry is not None and geometry.depth_hist is None:
                sample["depth_hist"] = torch.from_numpy(np.stack(
                    [depth_histogram(d.numpy(), self.depth_bins, self.max_depth) for d in depths]))
        if cfg.load_semantics and rec.semantics is not None:
            maps = [load_semantics(rec.semantics[v], p, field=f"semantics[{v}]") for v, p in zip(views, plans)]
            sample["semantics"] = torch.stack(pad_to_common(maps, fill=UNLABELLED, shifts=Ks_shift)[0])
        meta = rec.meta()
        meta["views"] = views
        meta["source_name"] = self.name
        sample.update(question=rec.question, situation=rec.situation, answer=rec.target_text(), meta=meta)
        if self._same_views:
            # Drawn last, so the views and geometry dropout above keep their random streams.
            others = [i for i in self._same_views[tuple(rec.images)] if self.records[i] is not rec]
            picked = rng.permutation(len(others))[: self.cfg.turns - 1]
            sample["turns"] = [{"question": self.records[others[k]].question,
                                "situation": self.records[others[k]].situation,
                                "answer": self.records[others[k]].target_text()} for k in picked]
        return sample


class MixedDataset(Dataset):
    """Several datasets as one: mixed by weight per epoch, or concatenated (``weights=None``).

    With weights, epoch e is a list of ``samples_per_epoch`` (default: the sum of the sources'
    sizes) positions; source k gets round(L * w_k / sum(w)) of them (largest remainder), filled
    from seeded permutations of its records, so a record repeats within an epoch only when its
    source's share exceeds its size. The list is a pure function of (seed, epoch).
    """

    def __init__(self, datasets: Sequence[RecordDataset], weights: Sequence[float] | None = None, *,
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
        for k, (d, n) in enumerate(zip(self.datasets, self.counts())):
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
                 seed: int = 0, drop_last: bool = False, epoch: int = 0):
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world_size {world_size}")
        self.length = length
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = epoch
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
        if self.shuffle:
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
        return iter([(epoch, int(i), bool(p)) for i, p in zip(idx, pad)])


def build_dataset(data_cfg: DataConfig, split: str, *, geometry_cfg: GeometryConfig | None = None,
                  seed: int = 0, samples_per_epoch: int | None = None,
                  sources: Sequence[Any] | None = None) -> Dataset:
    """Validate every record of the ``split`` ("train" or "val") sources and build the dataset.

    Training mixes several sources by weight (:class:`MixedDataset`); validation concatenates
    them. One source gives its :class:`RecordDataset` directly. ``sources`` overrides the config's
    list (e.g. ``vqkit eval --data FILE``). Bad records raise or are skipped per ``data.on_error``;
    the result's ``report`` counts them.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
    srcs = list(sources if sources is not None else (data_cfg.train if split == "train" else data_cfg.val))
    if not srcs:
        raise ConfigError(f"data.{split} lists no sources (add e.g. - {{path: data/{split}.jsonl}})")
    bins = geometry_cfg.depth_bins if geometry_cfg is not None else 16
    max_depth = geometry_cfg.max_depth if geometry_cfg is not None else 10.0
    train = split == "train"
    datasets = []
    for k, src in enumerate(srcs):
        path = src.path if hasattr(src, "path") else str(src)
        name = getattr(src, "name", None) or Path(path.split("*")[0]).stem or f"source{k}"
        report = LoadReport()
        records = load_records(path, image_root=data_cfg.image_root,
                               allow_outside_root=data_cfg.allow_outside_root,
                               on_error=data_cfg.on_error, depth_bins=bins, report=report)
        if data_cfg.exclude_qtypes and records:
            records = [r for r in records if r.qtype not in data_cfg.exclude_qtypes]
            if not records:
                raise DataError(f"{path}: every record's qtype is in data.exclude_qtypes {data_cfg.exclude_qtypes}")
        if not records:
            raise DataError(f"{path}: no usable records ({report.summary()})")
        datasets.append(RecordDataset(records, data_cfg, train=train, seed=seed, depth_bins=bins,
                                      max_depth=max_depth, name=name, stream=k, report=report))
    if len(datasets) == 1 and not samples_per_epoch:
        return datasets[0]
    weights = [float(getattr(s, "weight", 1.0)) for s in srcs] if train else None
    return MixedDataset(datasets, weights, samples_per_epoch=samples_per_epoch, seed=seed)


def build_dataloader(cfg: Config, split: str, tokenizer, *, batch_size: int, shuffle: bool,
                     blind: bool = False, generate: bool = False, rank: int = 0, world_size: int = 1,
                     epoch: int = 0, drop_last: bool | None = None, dataset: Dataset | None = None,
                     seed: int | None = None, collate_fn=None) -> DataLoader:
    """A DataLoader of collated batches (``vqkit.data.collate.Collator``, or ``collate_fn``) for ``split``.

    Sharded over ``world_size`` ranks with :class:`ShardedSampler` (call
    ``loader.sampler.set_epoch(e)`` each epoch, or :func:`set_epoch`). Workers and persistent workers
    come from ``cfg.data``; memory is pinned when CUDA is available. ``drop_last`` defaults to True for
    training (equal batch sizes), False otherwise. ``dataset`` reuses an already built dataset.
    """
    seed = cfg.train.seed if seed is None else seed
    if dataset is None:
        dataset = build_dataset(cfg.data, split, geometry_cfg=cfg.model.geometry, seed=seed)
    if cfg.data.feature_cache and not all(getattr(d, "feature_cache", None) is not None
                                          for d in getattr(dataset, "datasets", [dataset])):
        attach_feature_cache(dataset, cfg)
    if drop_last is None:
        drop_last = split == "train" and not generate and len(dataset) >= batch_size * world_size
    sampler = ShardedSampler(len(dataset), rank=rank, world_size=world_size, shuffle=shuffle, seed=seed,
                             drop_last=False, epoch=epoch)
    collator = collate_fn or Collator(tokenizer, cfg.model, cfg.data, mode="generate" if generate else "train",
                                      blind=blind)
    workers = cfg.data.num_workers
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator, num_workers=workers,
        pin_memory=torch.cuda.is_available(), drop_last=drop_last,
        persistent_workers=bool(cfg.data.persistent_workers and workers > 0),
        prefetch_factor=2 if workers > 0 else None,
        # Worker seeds follow the loader's generator; samples do not depend on them (per-item rngs).
        generator=torch.Generator().manual_seed(seed),
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of a loader's sampler and dataset (either may carry it)."""
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
