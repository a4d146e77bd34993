"""Posed view sets with depth: what VGGT's camera and depth heads learn from and are measured on
(``vqkit pretrain-encoder``, ``vqkit eval-geometry``).

A *view set* is a record's images with their camera geometry (``geom_token``) and depth maps
(``depths``), and their semantic maps (``semantics``) for the semantic objective. Question corpora
repeat a scene's views in every question about it, so records are deduplicated by their list of
images: each view set counts once per epoch. Records without what the objective needs (poses and
depth maps for the geometry heads, semantic maps for the semantic head) carry no supervision and are
left out (counted in the report).

Samples are :class:`vqkit.data.dataset.RecordDataset` samples loaded with their depth maps (images
[V, 3, H, W], R, t, K of the resized image, depths [V, H, W] in metres); batches are
:func:`vqkit.data.collate.collate_views` (images [B, S, 3, H, W], view_mask, geometry R / t / K,
depths [B, S, H, W]) plus the records' ``ids``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vqkit.data.collate import collate_views
from vqkit.data.dataset import MixedDataset, RecordDataset, load_source
from vqkit.data.schema import Record
from vqkit.errors import ConfigError, DataError


@dataclass
class ViewSetReport:
    """What :func:`load_view_sets` kept of the records it read."""

    records: int = 0
    kept: int = 0
    repeated: int = 0
    """Records whose images an earlier record already had (questions about the same views)."""
    without_poses: int = 0
    without_depth: int = 0
    without_semantics: int = 0
    wanted: str = "poses and depth"
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.kept} view sets with {self.wanted} from {self.records} records of "
                f"{', '.join(self.sources)} ({self.repeated} repeated views, {self.without_poses} without "
                f"poses, {self.without_depth} without depth maps, {self.without_semantics} without semantic maps)")


def load_view_sets(sources: Sequence[Any], data_cfg, *, depth_bins: int = 16, limit: int | None = None,
                   report: ViewSetReport | None = None, geometry: bool = True,
                   semantics: bool = False) -> list[Record]:
    """The distinct view sets among the records of ``sources`` (``data.train`` entries, or files or globs,
    validated like a training corpus, ``data.image_root`` etc. from ``data_cfg``) that have poses and depth maps
    (``geometry``) and semantic maps (``semantics``), in file order; the first ``limit`` only when given."""
    report = report if report is not None else ViewSetReport()
    report.wanted = " and ".join(w for w, on in (("poses and depth", geometry), ("semantic maps", semantics)) if on)
    seen: set[tuple[str, ...]] = set()
    kept: list[Record] = []
    for src in sources:
        report.sources.append(str(getattr(src, "path", src)))
        for record in load_source(src, data_cfg, depth_bins=depth_bins):
            report.records += 1
            key = tuple(record.images)
            if key in seen:
                report.repeated += 1
                continue
            seen.add(key)
            if geometry and record.geometry is None:
                report.without_poses += 1
            elif geometry and record.depths is None:
                report.without_depth += 1
            elif semantics and record.semantics is None:
                report.without_semantics += 1
            else:
                kept.append(record)
                if limit is not None and len(kept) >= limit:
                    break
        if limit is not None and len(kept) >= limit:
            break
    report.kept = len(kept)
    return kept


def build_view_set_dataset(data_cfg, sources: Sequence[Any], *, train: bool, seed: int = 0, depth_bins: int = 16,
                           max_depth: float = 10.0, limit: int | None = None,
                           report: ViewSetReport | None = None, geometry: bool = True,
                           semantics: bool = False) -> Dataset:
    """A dataset of the view sets from ``sources`` (``data.train`` / ``data.val`` entries or paths)
    with poses and depth (``geometry``) and semantic maps (``semantics``), loaded with them. Views are
    chosen as for the model (``data.num_views``, ``view_sampling``; view dropout in training);
    geometry dropout never applies (the poses are the targets). Several training sources are mixed by
    their weights. Raises DataError naming the files when no record qualifies."""
    if not sources:
        raise ConfigError(f"data.{'train' if train else 'val'} lists no sources of view sets")
    cfg = dataclasses.replace(data_cfg, load_depth=geometry, load_semantics=semantics, geometry_dropout=0.0,
                              blind=False, feature_cache=None)
    report = report if report is not None else ViewSetReport()
    datasets, weights = [], []
    for k, src in enumerate(sources):
        path = getattr(src, "path", None) or str(src)
        records = load_view_sets([src], cfg, depth_bins=depth_bins, report=report, geometry=geometry,
                                 semantics=semantics,
                                 limit=None if limit is None else limit - sum(len(d) for d in datasets))
        if not records:
            continue
        name = getattr(src, "name", None) or Path(path.split("*")[0]).stem or f"source{k}"
        datasets.append(RecordDataset(records, cfg, train=train, seed=seed, depth_bins=depth_bins,
                                      max_depth=max_depth, name=name, stream=k))
        weights.append(float(getattr(src, "weight", 1.0)))
        if limit is not None and sum(len(d) for d in datasets) >= limit:
            break
    if not datasets:
        needs = [n for n, on in (("poses (geom_token) and depth maps (depths)", geometry),
                                 ("semantic maps (semantics)", semantics)) if on]
        raise DataError(f"no record with {' and '.join(needs)}: {report.summary()}")
    dataset = datasets[0] if len(datasets) == 1 else MixedDataset(datasets, weights if train else None, seed=seed)
    dataset.view_set_report = report
    return dataset


def collate_view_sets(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Samples of a view-set dataset -> a batch (:func:`vqkit.data.collate.collate_views` + ``ids``)."""
    batch = collate_views(samples)
    batch["ids"] = [s["meta"]["id"] for s in samples]
    return batch
