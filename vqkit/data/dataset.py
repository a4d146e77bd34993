"""Datasets and loaders: records -> samples (views chosen, images loaded, K adjusted) -> batches.

- :class:`RecordDataset`: one corpus. ``dataset[i]`` loads sample i's chosen views. View choice and
  view dropout come from ``numpy.random.default_rng((seed, epoch, i))`` only, so a sample is the same
  in every process, worker count and run with the same seed and epoch. In training a conversation of
  several turns (records with the same ``conversation``) is one sample, each of its turns a target.
- :class:`~vqkit.data.mixing.MixedDataset` and :class:`~vqkit.data.mixing.ShardedSampler`
  (:mod:`vqkit.data.mixing`): several corpora mixed by weight or rate, an epoch sharded over ranks.
- :func:`build_dataset` and :func:`build_dataloader` assemble them from the config.

A sample is a dict: ``images`` float32 [V, 3, H, W] in [0, 1]; ``K`` [V, 3, 3] (pixel K of the
resized image, zeros without geometry); ``R`` [V, 3, 3]; ``t`` [V, 3]; ``depth_hist`` [V, B]
(zeros where absent); ``has_geometry`` bool; ``pixel_box`` [V, 4] (x0, y0, x1, y1 of each view's own
pixels in the sample's padded frame); optional ``depths`` [V, H, W] metres; ``question``,
``situation`` (None when the question already holds it), ``answer`` (the target text), optional
``vision_at`` (where the views go in the question) and ``system``; in training ``turns``: a
conversation's later turns in order, or with ``data.turns > 1`` up to ``turns - 1`` other records with
the same views, as question / situation / answer dicts in a seeded order; ``meta`` (see
``Record.meta``, plus ``views``, the chosen view indices, ``replaced_from`` when a corrupt item was
replaced, ``is_padding``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vqkit.cameras import depth_histogram
from vqkit.config.data import SourceConfig
from vqkit.data.collate import Collator
from vqkit.data.feature_cache import attach_feature_cache
from vqkit.data.images import (
    UNLABELLED,
    image_file_size,
    load_depth,
    load_semantics,
    load_views,
    pad_to_common,
    plan_resize,
)
from vqkit.data.mixing import MixedDataset, ShardedSampler, _index
from vqkit.data.packing import TokenBatchSampler
from vqkit.data.schema import LoadReport, Record, load_records
from vqkit.data.views import choose_views
from vqkit.errors import ConfigError, DataError
from vqkit.vggt.predicted_geometry import view_boxes

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import Config, DataConfig, GeometryConfig

log = logging.getLogger("vqkit.data")

# How many other records a corrupt item may try before giving up (skip mode).
MAX_REPLACEMENTS = 16


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
        # The records a training sample starts from: every record, but a conversation of several turns
        # (vqkit.data.conversations) is one sample, its first turn followed by the others in order.
        self.items, self._later_turns = conversation_items(self.records) if train else (None, {})
        unanswered = next((r for r in self.records if r.unanswered), None) if train else None
        if unanswered is not None:
            raise DataError(f"{unanswered.where}: record '{unanswered.id}': field 'answer': missing ('answers': [] "
                            f"marks a question without references, for evaluation only, not training)")
        if data_cfg.box_frame != "scene":
            missing = next((r for r in self.records if r.box is not None and r.geometry is None), None)
            if missing is not None:
                raise DataError(f"{missing.where}: record '{missing.id}': field 'geom_token': data.box_frame "
                                f"{data_cfg.box_frame} writes the box in the first view's frame, which needs "
                                f"the record's camera geometry (or set data.box_frame: scene)")
        # Records that share their views (one room's questions), for data.turns > 1.
        self._same_views: dict[tuple[str, ...], list[int]] = {}
        if train and data_cfg.turns > 1:
            for i, r in enumerate(self.records):
                if r.conversation is None:
                    self._same_views.setdefault(tuple(r.images), []).append(i)
        self.feature_cache = None
        """A ``vqkit.data.feature_cache.FeatureCache`` (set by ``attach_feature_cache``): samples then carry cached
        encoder ``features`` [V, P, C] and ``image_hw`` instead of ``images``."""

    def __len__(self) -> int:
        return len(self.items) if self.items is not None else len(self.records)

    def record(self, index: int) -> Record:
        """The record sample ``index`` starts from (a conversation's first turn in training)."""
        return self.records[self.items[index] if self.items is not None else index]

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (ShardedSampler passes the epoch with each index)."""
        self.epoch = int(epoch)

    def __getitem__(self, item) -> dict[str, Any]:
        epoch, index, is_padding = _index(item, self.epoch)
        sample = self.get(index, epoch, key=index)
        sample["meta"]["is_padding"] = is_padding
        return sample

    def item_encoding(self, item, collator) -> dict[str, Any]:
        """:meth:`planned` of a sampler item (an index or a ShardedSampler tuple)."""
        epoch, index, _ = _index(item, self.epoch)
        return self.planned(index, epoch, index, collator)

    def item_tokens(self, item, collator) -> int:
        """The tokens of a sampler item as ``collator`` lays it out (:meth:`planned`)."""
        return len(self.item_encoding(item, collator)["input_ids"])

    def rng(self, epoch: int, key: int, attempt: int = 0) -> np.random.Generator:
        """The generator of item ``key`` in ``epoch``: a function of (seed, stream, epoch, key) only."""
        return np.random.default_rng((self.seed, self.stream, epoch, key, attempt))

    def get(self, index: int, epoch: int, key: int) -> dict[str, Any]:
        """Load record ``index``; ``key`` seeds its randomness (the position in a mixed epoch).

        In skip mode a record whose files cannot be decoded is replaced by another record chosen
        from (seed, epoch, key), so the replacement is the same in every run.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        tried = index
        for attempt in range(MAX_REPLACEMENTS + 1):
            if tried not in self._bad:
                try:
                    sample = self._load(self.record(tried), self.rng(epoch, key, attempt))
                    if tried != index:
                        sample["meta"]["replaced_from"] = self.record(index).id
                        self.num_replaced += 1
                    return sample
                except DataError as e:
                    rec = self.record(tried)
                    if self.cfg.on_error == "raise":
                        raise DataError(f"{rec.where}: record '{rec.id}': {e}") from None
                    self._bad.add(tried)
                    log.warning("%s: skipping record '%s' whose files cannot be decoded: %s",
                                rec.where, rec.id, e)
            tried = int(self.rng(epoch, key, attempt + 1).integers(len(self)))
        raise DataError(f"{self.name}: {MAX_REPLACEMENTS} records in a row could not be decoded "
                        f"(last: {self.record(tried).where}); the corpus looks broken")

    def _plan(self, rec: Record, rng: np.random.Generator) -> tuple[list[int], Any, list[dict] | None]:
        """What a sample draws at random, in the order it draws it: its views, whether its geometry is
        dropped, and its other turns (a conversation's later turns, or ``data.turns``; None without)."""
        cfg = self.cfg
        views = choose_views(rec.num_views, cfg.num_views, cfg.view_sampling, cfg.view_dropout,
                             self.train, rng)
        geometry = rec.geometry
        # Drawn only when asked for, so runs without geometry dropout keep their random streams.
        if geometry is not None and self.train and cfg.geometry_dropout > 0 and rng.random() < cfg.geometry_dropout:
            geometry = None
        turns = None
        later = self._later_turns.get(id(rec))
        if later:
            turns = [_turn(self.records[i], self._target(self.records[i], views[0])) for i in later]
        elif self._same_views and rec.conversation is None:
            # Drawn last, so the views and geometry dropout above keep their random streams.
            others = [i for i in self._same_views[tuple(rec.images)] if self.records[i] is not rec]
            picked = rng.permutation(len(others))[: self.cfg.turns - 1]
            turns = [_turn(self.records[others[k]], self._target(self.records[others[k]], views[0])) for k in picked]
        return views, geometry, turns

    def planned(self, index: int, epoch: int, key: int, collator) -> dict[str, Any]:
        """Sample ``index``'s tokens and labels as ``collator`` lays them out (``Collator.planned``), with the
        draws ``get(index, epoch, key)`` makes (views, geometry dropout, turns), without loading images
        (:mod:`vqkit.data.packing`). A patch merger's vision block is sized by the sample's own image size
        (the cached one, or its files' headers); a record that ``on_error: skip`` replaces counts as itself."""
        rec = self.record(index)
        views, geometry, turns = self._plan(rec, self.rng(epoch, key, 0))
        hw = None
        if collator.model_cfg.projector.type == "patch_merger" and not collator.blind:
            hw = self._image_hw(rec, views)
        return collator.planned(rec.question, rec.prompt_situation, self._target(rec, views[0]), len(views),
                                geometry is not None, hw, turns or (), rec.vision_at, rec.system)

    def _image_hw(self, rec: Record, views: list[int]) -> tuple[int, int]:
        """The (padded) size of a record's chosen views as the model sees them (a bound when the files
        cannot be read here; loading them would fail later)."""
        if self.feature_cache is not None:
            return tuple(self.feature_cache.entry(rec)[5])
        cfg = self.cfg
        try:
            sizes = [plan_resize(*image_file_size(rec.images[v]), cfg.image_size, cfg.resize_mode).out for v in views]
        except DataError:  # not readable here (a plan away from the data): the largest a view can be
            return cfg.image_size, cfg.image_size
        return max(h for _, h in sizes), max(w for w, _ in sizes)

    def _load(self, rec: Record, rng: np.random.Generator) -> dict[str, Any]:
        cfg = self.cfg
        views, geometry, turns = self._plan(rec, rng)
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
            K = np.stack([p.intrinsics(k) for p, k in zip(plans, geo.K, strict=True)])
            K[:, 0, 2] += Ks_shift[:, 0]
            K[:, 1, 2] += Ks_shift[:, 1]
            sample["K"] = torch.from_numpy(K.astype(np.float32))
            if geo.depth_hist is not None:
                sample["depth_hist"] = torch.from_numpy(geo.depth_hist.astype(np.float32))
        if cfg.load_depth and rec.depths is not None:
            depths = [load_depth(rec.depths[v], p, field=f"depths[{v}]") for v, p in zip(views, plans, strict=True)]
            depths = pad_to_common(depths, fill=0.0, shifts=Ks_shift)[0]
            sample["depths"] = torch.stack(depths)
            if geometry is not None and geometry.depth_hist is None:
                sample["depth_hist"] = torch.from_numpy(np.stack(
                    [depth_histogram(d.numpy(), self.depth_bins, self.max_depth) for d in depths]))
        if cfg.load_semantics and rec.semantics is not None:
            maps = [load_semantics(rec.semantics[v], p, field=f"semantics[{v}]")
                    for v, p in zip(views, plans, strict=True)]
            sample["semantics"] = torch.stack(pad_to_common(maps, fill=UNLABELLED, shifts=Ks_shift)[0])
        meta = rec.meta()
        meta["views"] = views
        meta["source_name"] = self.name
        if rec.box is not None:
            pose = rec.first_view_pose(views[0])
            meta["view_pose"] = None if pose is None else [pose[0].tolist(), pose[1].tolist()]
        sample.update(question=rec.question, situation=rec.prompt_situation, answer=self._target(rec, views[0]),
                      meta=meta)
        if rec.vision_at is not None:
            sample["vision_at"] = rec.vision_at
        if rec.system is not None:
            sample["system"] = rec.system
        if turns is not None:
            sample["turns"] = turns
        return sample

    def _target(self, rec: Record, first_view: int) -> str | None:
        """The answer text; a grounding record's box in ``data.box_frame`` as the sample's first view
        (the record's image ``first_view``) gives it, rounded to ``data.box_step_cm``."""
        if rec.unanswered:
            return None  # nothing to learn or score: the question is only asked (generate mode)
        if rec.box is None:
            return rec.target_text()
        return rec.grounding_target(self.cfg.box_frame, self.cfg.box_step_cm, first_view)


def _turn(rec: Record, answer: str | None) -> dict[str, Any]:
    """A follow-up turn of a training sample: its question, situation and answer."""
    return {"question": rec.question, "situation": rec.prompt_situation, "answer": answer}


def conversation_items(records: Sequence[Record]) -> tuple[list[int], dict[int, list[int]]]:
    """(the records training samples start from, and each conversation's later turns by ``id()`` of its
    first): a record outside a conversation is a sample of its own; the turns of a conversation (same
    ``source`` and ``conversation``) are one sample, its first turn followed by the others in turn order,
    at the place of the conversation's first record."""
    groups: dict[tuple[str, str], list[int]] = {}
    place: dict[tuple[str, str], int] = {}
    items: list[int] = []
    for i, r in enumerate(records):
        if r.conversation is None:
            items.append(i)
            continue
        key = (r.source, r.conversation)
        if key not in groups:
            groups[key], place[key] = [], len(items)
            items.append(i)
        groups[key].append(i)
    later: dict[int, list[int]] = {}
    for key, group in groups.items():
        group.sort(key=lambda i: records[i].turn or 0)
        items[place[key]] = group[0]
        later[id(records[group[0]])] = group[1:]
    return items, later


def load_source(src: Any, data_cfg: DataConfig, **kwargs) -> list[Record]:
    """The records of one source (a ``SourceConfig`` or a path) as training reads them: its own
    ``image_root`` and ``format``, else the ``data`` section's root; ``kwargs`` go to ``load_records``."""
    src = src if hasattr(src, "path") else SourceConfig(path=str(src))
    return [r for path in [src.path, *src.join]  # joined files: their records share turns with path's
            for r in load_records(path, image_root=src.image_root or data_cfg.image_root,
                                  allow_outside_root=data_cfg.allow_outside_root, on_error=data_cfg.on_error,
                                  format=src.format, video_frames=data_cfg.video_frames, **kwargs)]


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
    srcs = [s if hasattr(s, "path") else SourceConfig(path=str(s)) for s in srcs]  # a path: the defaults
    for k, src in enumerate(srcs):
        path = src.path
        name = src.name or Path(path.split("*")[0]).stem or f"source{k}"
        report = LoadReport()
        records = load_source(src, data_cfg, depth_bins=bins, report=report)
        if data_cfg.exclude_qtypes and records:
            records = [r for r in records if r.qtype not in data_cfg.exclude_qtypes]
            if not records:
                raise DataError(f"{path}: every record's qtype is in data.exclude_qtypes {data_cfg.exclude_qtypes}")
        if not records:
            raise DataError(f"{path}: no usable records ({report.summary()})")
        datasets.append(RecordDataset(records, data_cfg, train=train, seed=seed, depth_bins=bins,
                                      max_depth=max_depth, name=name, stream=k, report=report))
    rates = [s.rate for s in srcs]
    if train and any(r is not None for r in rates):
        if any(s.weight != 1.0 for s in srcs):
            raise ConfigError("data.train mixes weights and rates: give every source a rate (percent of its own "
                              "samples, VG-LLM's name%rate) or every source a weight, not both")
        # VG-LLM's name%rate: each source gives rate% of its samples an epoch (all of them without a rate).
        shares = [len(d) * (100.0 if r is None else float(r)) / 100.0 for d, r in zip(datasets, rates, strict=True)]
        return MixedDataset(datasets, shares, samples_per_epoch=samples_per_epoch or max(1, round(sum(shares))),
                            seed=seed)
    if len(datasets) == 1 and not samples_per_epoch:
        return datasets[0]
    weights = [float(s.weight) for s in srcs] if train else None
    return MixedDataset(datasets, weights, samples_per_epoch=samples_per_epoch, seed=seed)


def build_dataloader(cfg: Config, split: str, tokenizer, *, batch_size: int, shuffle: bool,
                     blind: bool = False, generate: bool = False, rank: int = 0, world_size: int = 1,
                     epoch: int = 0, drop_last: bool | None = None, dataset: Dataset | None = None,
                     seed: int | None = None, collate_fn=None, pack: bool = False,
                     tokens_per_batch: int | None = None) -> DataLoader:
    """A DataLoader of collated batches (``vqkit.data.collate.Collator``, or ``collate_fn``) for ``split``.

    Sharded over ``world_size`` ranks with :class:`ShardedSampler` (call
    ``loader.sampler.set_epoch(e)`` each epoch, or :func:`set_epoch`). Workers and persistent workers
    come from ``cfg.data``; memory is pinned when CUDA is available. ``drop_last`` defaults to True for
    training (equal batch sizes), False otherwise. ``dataset`` reuses an already built dataset.

    Training only: ``pack`` lays each batch's samples in one row (``data.packing``); ``tokens_per_batch``
    makes batches of at most that many tokens instead of ``batch_size`` samples
    (:class:`vqkit.data.packing.TokenBatchSampler`, ``data.packing_buffer`` samples looked ahead; every
    batch is kept).
    """
    seed = cfg.train.seed if seed is None else seed
    if dataset is None:
        dataset = build_dataset(cfg.data, split, geometry_cfg=cfg.model.geometry, seed=seed)
    if cfg.data.feature_cache and not all(getattr(d, "feature_cache", None) is not None
                                          for d in getattr(dataset, "datasets", [dataset])):
        attach_feature_cache(dataset, cfg)
    if drop_last is None:
        drop_last = split == "train" and not generate and len(dataset) >= batch_size * world_size
    strata = None
    if isinstance(dataset, MixedDataset) and dataset.weights is not None:
        strata = dataset.epoch_plan(epoch)[0]
    sampler = ShardedSampler(len(dataset), rank=rank, world_size=world_size, shuffle=shuffle, seed=seed,
                             drop_last=False, epoch=epoch, strata=strata)
    collator = collate_fn or Collator(tokenizer, cfg.model, cfg.data, mode="generate" if generate else "train",
                                      blind=blind, pack=pack)
    workers = cfg.data.num_workers
    batching: dict[str, Any] = {"batch_size": batch_size, "sampler": sampler, "drop_last": drop_last}
    if tokens_per_batch:
        if generate:
            raise ConfigError("batches measured in tokens are for training (tokens_per_batch with generate)")
        batching = {"batch_sampler": TokenBatchSampler(sampler, lambda item: dataset.item_tokens(item, collator),
                                                       tokens_per_batch, packed=pack, buffer=cfg.data.packing_buffer)}
    return DataLoader(
        dataset, collate_fn=collator, num_workers=workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=bool(cfg.data.persistent_workers and workers > 0),
        prefetch_factor=2 if workers > 0 else None,
        # Worker seeds follow the loader's generator; samples do not depend on them (per-item rngs).
        generator=torch.Generator().manual_seed(seed), **batching,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of a loader's sampler and dataset (either may carry it)."""
    for obj in (loader.sampler, loader.batch_sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
