"""Writing the frozen-encoder feature cache: ``vqkit cache-features --config FILE --out DIR``.

Every unique view set of the config's records goes through the frozen aggregator once, in batches of
view sets of equal view count and image shape, under ``torch.inference_mode()`` (bf16 autocast on a
GPU); images are decoded by DataLoader workers exactly as the datasets decode them
(:func:`vqkit.data.images.load_views`). Features are stored in shards written atomically, and the
index last (atomically), so an interrupted run leaves the previous cache usable. The folder's layout
and the read side are :mod:`vqkit.data.feature_cache`.

An existing cache with the same key is extended (only missing view sets are encoded); another key
needs ``overwrite``. Under torchrun each rank encodes every WORLD_SIZE-th view set into its own shards
and writes a partial index; rank 0 merges them into ``index.json`` after a barrier.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vqkit.data.dataset import load_source
from vqkit.data.feature_cache import (
    DTYPES,
    FEATURES_KEY,
    INDEX_FILE,
    cache_spec,
    read_index,
    record_views,
    spec_differences,
    spec_key,
)
from vqkit.data.images import load_views
from vqkit.errors import CheckpointError, ConfigError, DataError
from vqkit.utils import distributed
from vqkit.utils.files import write_json_atomic, write_safetensors
from vqkit.utils.runtime import autocast, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import Config


@dataclasses.dataclass
class ViewSet:
    """One unique set of views to encode: its cache key, image paths, view indices in its record and
    where it was first seen (for messages)."""

    key: str
    paths: list[str]
    views: list[int]
    where: str


class _ViewSetImages(torch.utils.data.Dataset):
    """Decodes a view set's images as the dataset does. Item -> (index, images [V, 3, H, W], source
    sizes [(w, h)])."""

    def __init__(self, items: list[ViewSet], image_size: int, resize_mode: str):
        self.items, self.image_size, self.resize_mode = items, image_size, resize_mode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            images, plans, _ = load_views(item.paths, self.image_size, self.resize_mode)
        except DataError as e:
            raise DataError(f"{item.where}: {e}") from None
        return i, torch.stack(images), [plan.src for plan in plans]


def collect_view_sets(cfg: Config, splits: Sequence[str]) -> tuple[list[ViewSet], int]:
    """Unique view sets over the records of ``splits`` (first appearance order) and the record count."""
    seen: dict[str, ViewSet] = {}
    n_records = 0
    for split in splits:
        sources = cfg.data.train if split == "train" else cfg.data.val
        for src in sources:
            records = load_source(src, cfg.data, depth_bins=cfg.model.geometry.depth_bins)
            memo: dict[tuple[str, ...], str] = {}
            for rec in records:
                n_records += 1
                images = tuple(rec.images)
                if images in memo:
                    continue
                views, key = record_views(rec, cfg.data)
                memo[images] = key
                if key not in seen:
                    seen[key] = ViewSet(key, [rec.images[v] for v in views], views, rec.where)
    return list(seen.values()), n_records


class _ShardWriter:
    """Buffers encoded view sets and writes them as shards of about ``shard_rows`` views each.

    ``entries[key] = [shard name, first row, n views, views, source sizes, (H, W)]`` once flushed.
    """

    def __init__(self, out: Path, rank: int, start_id: int, key: str, shard_rows: int):
        self.out, self.rank, self.start_id, self.key, self.shard_rows = out, rank, start_id, key, shard_rows
        self.shards: list[str] = []
        self.entries: dict[str, list] = {}
        self._buffer: list[torch.Tensor] = []
        self._pending: list[tuple[str, list]] = []  # entries of the buffered rows, without a shard yet
        self._rows = 0
        self.feature_shape: tuple[int, int] | None = None

    def add(self, view_set: ViewSet, features: torch.Tensor, sizes, hw: tuple[int, int]) -> None:
        shape = tuple(features.shape[-2:])
        if self.feature_shape is None:
            self.feature_shape = shape
        elif shape != self.feature_shape:
            raise DataError(f"{view_set.where}: features of shape {shape} differ from {self.feature_shape}: the "
                            f"cache needs one image shape for all records (use data.resize_mode: pad, or "
                            f"images of one aspect ratio)")
        self._pending.append((view_set.key, [self._rows, len(view_set.views), view_set.views,
                                             [list(s) for s in sizes], [int(hw[0]), int(hw[1])]]))
        self._buffer.append(features)
        self._rows += features.shape[0]
        if self._rows >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        name = f"shard_{self.rank:02d}_{self.start_id + len(self.shards):05d}.safetensors"
        features = torch.cat(self._buffer).contiguous()
        write_safetensors(self.out / name, {FEATURES_KEY: features}, metadata={"key": self.key, "format": "pt"})
        self.shards.append(name)
        for key, entry in self._pending:
            self.entries[key] = [name, *entry]
        self._buffer, self._pending, self._rows = [], [], 0


def _existing_index(out: Path, key: str, spec: dict, overwrite: bool) -> dict | None:
    """The cache's index when it has the same key (to extend), None for a new cache; another key is
    refused unless ``overwrite``."""
    if not (out / INDEX_FILE).is_file():
        return None
    index = json.loads((out / INDEX_FILE).read_text())
    if index.get("key") == key and not overwrite:
        return index
    if not overwrite:
        diffs = spec_differences(index.get("spec", {}), spec)
        raise CheckpointError(f"{out} holds a feature cache for another encoder/config "
                              f"({'; '.join(diffs) or 'key differs'}); pass --overwrite to replace it")
    return None


def _merge_index(out: Path, cfg: Config, spec: dict, key: str, dtype: str, old: dict | None, parts: list[dict],
                 stats: dict) -> dict:
    """One index of the old entries (if extending) and every rank's new ones."""
    shard_names = list(old["shards"]) if old else []
    merged = {k: [shard_names[v[0]], *v[1:]] for k, v in (old["entries"] if old else {}).items()}
    feature_shape = old["feature_shape"] if old else None
    for part in parts:
        if part["shape"] is not None:
            if feature_shape is not None and list(part["shape"]) != list(feature_shape):
                raise DataError(f"{out}: new features have shape {part['shape']} but the cache holds "
                                f"{feature_shape}; rebuild with --overwrite")
            feature_shape = part["shape"]
        shard_names += [name for name in part["shards"] if name not in shard_names]
        merged.update(part["entries"])
    names = sorted(shard_names)
    position = {name: i for i, name in enumerate(names)}
    return {
        "spec": spec, "key": key, "feature_shape": feature_shape, "dtype": dtype,
        "data": {"num_views": cfg.data.num_views, "view_sampling": cfg.data.view_sampling,
                 "image_size": cfg.data.image_size, "resize_mode": cfg.data.resize_mode},
        "note": "global attention saw every cached view of a set; view dropout drops rows afterwards",
        "shards": names, "entries": {k: [position[v[0]], *v[1:]] for k, v in merged.items()},
        "stats": {**stats, "seconds": max(p["seconds"] for p in parts)},
    }


def splits_with_sources(cfg: Config, split: str, where: str = "the config") -> tuple[str, ...]:
    """The splits ``split`` names (train, val or both) that have data sources in ``cfg``; none is a
    one-line ConfigError naming ``where`` the config came from."""
    splits = ("train", "val") if split == "both" else (split,)
    splits = tuple(s for s in splits if (cfg.data.train if s == "train" else cfg.data.val))
    if not splits:
        raise ConfigError(f"{where}: no data sources for --split {split}")
    return splits


def format_cache_summary(out_dir: str | Path) -> str:
    """One line on the cache in ``out_dir`` from its index: view sets, shards, feature shape, time."""
    index = read_index(out_dir)
    st = index["stats"]
    return (f"{out_dir}: {len(index['entries'])} view sets ({st['encoded_now']} encoded now, "
            f"{st['records']} records) in {len(index['shards'])} shard(s), features "
            f"{index['feature_shape']} {index['dtype']}, {st['seconds']:.1f} s")


def build_feature_cache(cfg: Config, out_dir: str | Path, splits: Sequence[str] = ("train", "val"), *,
                        batch_size: int = 16, dtype: str = "float16", overwrite: bool = False,
                        shard_rows: int = 8192, num_workers: int | None = None, device: str | None = None,
                        progress: bool = True) -> Path:
    """Encode every unique view set of the config's ``splits`` once and store the features.

    Args:
        cfg: experiment config (``model.encoder``, ``data`` sources, num_views, image size).
        out_dir: cache folder (created); point ``data.feature_cache`` at it.
        batch_size: view sets per encoder call (sets of equal view count and image shape).
        dtype: "float16" or "bfloat16" storage.
        overwrite: replace a cache built for another spec (otherwise CheckpointError).
        shard_rows: views per shard file.
        num_workers: image-decoding workers (default ``data.num_workers``).
        device: encoder device (default: this process's GPU when there is one, else CPU).

    Returns the folder. An existing cache with the same key is extended: only view sets that are
    not in it yet are encoded.
    """
    from vqkit.models.builder import build_encoder

    if dtype not in DTYPES:
        raise ConfigError(f"feature cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    for split in splits:
        if split not in ("train", "val"):
            raise ConfigError(f"split must be train or val, got {split!r}")
    out = Path(out_dir)
    distributed.init_from_env()
    rank, world = distributed.rank_and_world()
    device = resolve_device(device)
    spec = cache_spec(cfg, dtype)
    key = spec_key(spec)

    old = _existing_index(out, key, spec, overwrite)
    distributed.barrier()
    if overwrite and rank == 0 and out.is_dir():
        for p in list(out.glob("shard_*.safetensors")) + [out / INDEX_FILE]:
            if p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    distributed.barrier()

    all_sets, n_records = collect_view_sets(cfg, splits)
    todo = [vs for vs in all_sets if not old or vs.key not in old["entries"]]
    mine = todo[rank::world]
    encoder = build_encoder(cfg.model.encoder, device=device)
    # Shard names continue after the existing ones, so extending never overwrites a shard.
    start_id = 1 + max([int(Path(s).stem.split("_")[-1]) for s in (old["shards"] if old else [])] or [-1])
    writer = _ShardWriter(out, rank, start_id, key, shard_rows)
    started = time.time()
    _encode_all(encoder, cfg, mine, writer, batch_size=batch_size, store=DTYPES[dtype], device=device,
                num_workers=cfg.data.num_workers if num_workers is None else num_workers,
                progress_label=f"cache-features{f' rank {rank}' if world > 1 else ''}" if progress else None)
    writer.flush()
    part = {"shape": list(writer.feature_shape) if writer.feature_shape else None, "shards": writer.shards,
            "entries": writer.entries, "seconds": time.time() - started}

    parts = distributed.all_gather_objects(part)
    if rank == 0:
        stats = {"records": n_records, "view_sets": len(all_sets), "encoded_now": len(todo)}
        write_json_atomic(out / INDEX_FILE, _merge_index(out, cfg, spec, key, dtype, old, parts, stats), indent=None)
    distributed.barrier()
    return out


def _encode_all(encoder, cfg: Config, view_sets: list[ViewSet], writer: _ShardWriter, *, batch_size: int,
                store: torch.dtype, device: torch.device, num_workers: int, progress_label: str | None) -> None:
    """Decode ``view_sets`` (DataLoader workers), group them by shape, encode and hand them to ``writer``."""
    from tqdm.auto import tqdm

    layers = list(cfg.model.encoder.layers)
    loader = torch.utils.data.DataLoader(
        _ViewSetImages(view_sets, cfg.data.image_size, cfg.data.resize_mode), batch_size=None, shuffle=False,
        num_workers=num_workers, prefetch_factor=4 if num_workers > 0 else None)

    def encode(group: list) -> None:
        images = torch.stack([g[1] for g in group]).to(device)  # [G, V, 3, H, W]
        with torch.inference_mode(), autocast(device, "bf16"):
            features = encoder.encode(images, layers=layers)  # [G, V, P, C]
        features = features.to("cpu", store)
        first = view_sets[group[0][0]]
        if not torch.isfinite(features).all():
            raise DataError(f"{first.where}: non-finite encoder features in {store} (try --dtype bfloat16)")
        for (i, _, sizes), f in zip(group, features, strict=True):
            writer.add(view_sets[i], f, sizes, images.shape[-2:])

    pending: dict[tuple, list] = {}  # (n views, 3, H, W) -> [(index, images, sizes)]
    bar = tqdm(total=len(view_sets), desc=progress_label, unit="set", disable=progress_label is None,
               mininterval=1.0, dynamic_ncols=True)
    for i, images, sizes in loader:
        group = pending.setdefault(tuple(images.shape), [])
        group.append((i, images, sizes))
        if len(group) >= batch_size:
            encode(pending.pop(tuple(images.shape)))
        bar.update(1)
    for shape in list(pending):
        encode(pending.pop(shape))
    bar.close()
