"""Frozen-encoder feature cache, read side: a folder written by ``vqkit cache-features --config FILE
--out DIR`` (:mod:`vqkit.tools.cache_writer`), read back by the datasets instead of images.

The VGGT aggregator is frozen, so its output for a given set of views never changes. Many questions
share a scene and its views; encoding each unique view set once and reading the features back
removes the encoder from every training step (at full size it costs more than the LLM step).

What is stored: exactly what the projector consumes, ``Aggregator.encode(images, layers)`` =
``[S, P, C]`` per view set (P = 1 camera + registers + patch tokens, C = 2 * embed_dim * len(layers)),
as float16 (default) or bfloat16, one row per view.

Layout of ``DIR``::

    DIR/index.json                       spec + key, feature shape, shards, entries
    DIR/shard_R_NNNNN.safetensors        one tensor "features" [rows, P, C] per shard (R = writer rank)

``index.json`` holds the *spec* (everything that changes the features: every EncoderConfig field
that affects outputs incl. ``layers`` and ``seed``, a fingerprint of the encoder weights, the image
size and resize mode, the storage dtype, the cache format version) and ``key`` = sha256 of it.
Each *entry* is one view set, keyed by sha256 over its image files' (absolute path, size, mtime);
it points at ``(shard, first row, number of views)`` and keeps the view indices of the record and
each view's source image size (so intrinsics follow the resize without opening the images).

Which views are cached: the views the dataset picks *without* view dropout (``data.num_views`` by
``data.view_sampling``; with ``view_sampling: random`` every view of the record). All of them went
through the aggregator together, so **global attention has seen every cached view**: view dropout
during training drops rows of the cached features afterwards, which is not the same as encoding
the remaining views alone (the kept views' features still carry information from the dropped ones).

Reading (:class:`FeatureCache`): shards are memory-mapped (numpy memmap over the safetensors data
region), so DataLoader workers and torchrun ranks share the page cache and nothing is copied until
a sample's rows are gathered. The cache is checked when a dataset is attached to it
(:func:`attach_feature_cache`): a different spec raises :class:`CheckpointError` naming what
differs and how to rebuild; a record whose view set is not in the cache (new record, changed
file) raises :class:`DataError` naming the record, before the first training step.

Writing (:func:`vqkit.tools.cache_writer.build_feature_cache`): batches of view sets through the
encoder under ``torch.inference_mode()``, shards written atomically, an existing cache with the same
key extended, one with another key replaced only with ``--overwrite``; under torchrun every rank
encodes its share and rank 0 merges the index.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vqkit.data.video import media_file
from vqkit.data.views import cached_views
from vqkit.errors import CheckpointError, DataError
from vqkit.utils.files import json_sha256, read_safetensors_header
from vqkit.vggt.fingerprint import NOT_IN_FINGERPRINT, weights_fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import Config, DataConfig
    from vqkit.data.schema import Record

log = logging.getLogger("vqkit.data.feature_cache")

CACHE_VERSION = 1
INDEX_FILE = "index.json"
FEATURES_KEY = "features"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------



def cache_spec(cfg: Config, dtype: str = "float16") -> dict[str, Any]:
    """Everything that determines the cached features (stored in index.json, hashed into ``key``)."""
    enc = {k: v for k, v in dataclasses.asdict(cfg.model.encoder).items() if k not in NOT_IN_FINGERPRINT}
    return {"version": CACHE_VERSION, "encoder": enc, "weights": weights_fingerprint(cfg.model.encoder),
            "image_size": cfg.data.image_size, "resize_mode": cfg.data.resize_mode, "dtype": dtype}


def spec_key(spec: dict[str, Any]) -> str:
    return json_sha256(spec)


def spec_differences(cached: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Human-readable ``field: cached -> config`` lines for two specs."""
    out = []
    for key in sorted(set(cached) | set(wanted)):
        a, b = cached.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}: {a.get(k)!r} in the cache, {b.get(k)!r} in the config"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            name = "encoder weights" if key == "weights" else key
            out.append(f"{name}: {a!r} in the cache, {b!r} in the config")
    return out


def view_set_key(paths: Sequence[str]) -> str:
    """sha256 over the image files' (absolute path, size, mtime): changes when a file changes (a video's
    frame reference: its file's size and mtime)."""
    items = []
    for p in paths:
        try:
            st = os.stat(media_file(p))
        except FileNotFoundError:
            raise DataError(f"{p}: image not found") from None
        items.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return json_sha256(items)


def record_views(rec: Record, data_cfg: DataConfig) -> tuple[list[int], str]:
    views = cached_views(rec.num_views, data_cfg)
    return views, view_set_key([rec.images[v] for v in views])


# --------------------------------------------------------------------------------------------
# Shards (safetensors, memory-mapped on read)
# --------------------------------------------------------------------------------------------


def _map_shard(path: Path) -> torch.Tensor:
    """The shard's feature tensor [rows, P, C], memory-mapped (copy-on-write, so read-only pages
    are shared between processes and torch gets a writable array without a warning)."""
    try:
        with open(path, "rb") as f:
            header, data_start = read_safetensors_header(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable feature shard ({e}); rebuild the cache") from None
    info = header.get(FEATURES_KEY)
    if info is None or info.get("dtype") not in ("F16", "BF16"):
        raise CheckpointError(f"{path}: no float16/bfloat16 '{FEATURES_KEY}' tensor; rebuild the cache")
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end - start != 2 * int(np.prod(shape)):
        raise CheckpointError(f"{path}: truncated shard; rebuild the cache")
    if end == start:
        return torch.zeros(shape, dtype=torch.float16 if info["dtype"] == "F16" else torch.bfloat16)
    arr = np.memmap(path, dtype=np.int16, mode="c", offset=data_start + start, shape=shape)
    return torch.from_numpy(arr).view(torch.float16 if info["dtype"] == "F16" else torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_index(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / INDEX_FILE
    if not path.is_file():
        raise CheckpointError(f"data.feature_cache: {folder} holds no {INDEX_FILE}; build it with "
                              f"`vqkit cache-features --config FILE --out {folder}`")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable feature cache index ({e}); rebuild it") from None
    if index.get("spec", {}).get("version") != CACHE_VERSION:
        raise CheckpointError(f"{path}: feature cache format {index.get('spec', {}).get('version')} is not "
                              f"{CACHE_VERSION}; rebuild with `vqkit cache-features --overwrite`")
    return index


class FeatureCache:
    """Read side of a cache folder for one config.

    ``FeatureCache(folder, cfg)`` checks the spec (CheckpointError naming the differences);
    :meth:`entry` finds a record's view set (DataError naming the record when absent);
    :meth:`features` gathers ``[V, P, C]`` rows for chosen views. Picklable: shards are mapped lazily
    in each process (DataLoader worker, torchrun rank) and dropped when pickled.
    """

    def __init__(self, folder: str | Path, cfg: Config, config_path: str | None = None):
        self.folder = Path(folder)
        index = read_index(self.folder)
        spec = cache_spec(cfg, index["spec"].get("dtype", "float16"))
        if index.get("key") != spec_key(spec):
            diffs = spec_differences(index["spec"], spec)
            raise CheckpointError(
                f"data.feature_cache {self.folder} was built for another encoder/config "
                f"({'; '.join(diffs) or 'key differs'}); rebuild it with `vqkit cache-features --config "
                f"{config_path or 'FILE'} --out {self.folder} --overwrite`")
        self.data_cfg = cfg.data
        self.built_with = index.get("data", {})
        self.shards: list[str] = list(index["shards"])
        self.entries: dict[str, list] = index["entries"]
        self.num_tokens, self.channels = index["feature_shape"]
        self.dtype = DTYPES[index["spec"]["dtype"]]
        self._maps: dict[int, torch.Tensor] = {}
        self._by_images: dict[tuple[str, ...], list] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def __len__(self) -> int:
        return len(self.entries)

    def _shard(self, i: int) -> torch.Tensor:
        if i not in self._maps:
            path = self.folder / self.shards[i]
            if not path.is_file():
                raise CheckpointError(f"{path}: feature shard missing; rebuild the cache")
            self._maps[i] = _map_shard(path)
        return self._maps[i]

    def entry(self, rec: Record) -> list:
        """The cache entry ``[shard, row, n, views, sizes, hw]`` of a record (memoised by image list)."""
        images = tuple(rec.images)
        found = self._by_images.get(images)
        if found is None:
            views, key = record_views(rec, self.data_cfg)
            found = self.entries.get(key)
            if found is None:
                hint = ""
                bw = self.built_with
                if bw and (bw.get("num_views"), bw.get("view_sampling")) != (
                        self.data_cfg.num_views, self.data_cfg.view_sampling):
                    hint = (f" (the cache was built with data.num_views={bw.get('num_views')}, "
                            f"view_sampling={bw.get('view_sampling')}; the config has "
                            f"{self.data_cfg.num_views}, {self.data_cfg.view_sampling})")
                raise DataError(
                    f"{rec.where}: record '{rec.id}': its views {views} are not in the feature cache "
                    f"{self.folder} (new record or changed image files){hint}; update it with "
                    f"`vqkit cache-features --config FILE --out {self.folder}`")
            self._by_images[images] = found
        return found

    def check(self, records: Iterable[Record]) -> int:
        """Look every record up now (so a stale cache fails before training); returns the count."""
        n = 0
        for rec in records:
            self.entry(rec)
            n += 1
        return n

    def features(self, rec: Record,
                 views: Sequence[int]) -> tuple[torch.Tensor, list[tuple[int, int]], tuple[int, int]]:
        """Rows of ``views`` (record view indices, a subset of the cached ones) ->
        (features [V, P, C] in the cache dtype, source (w, h) of each view, common (H, W))."""
        shard, row, n, cached, sizes, hw = self.entry(rec)
        pos = {v: j for j, v in enumerate(cached)}
        try:
            rows = [row + pos[v] for v in views]
        except KeyError:
            raise DataError(f"{rec.where}: record '{rec.id}': views {list(views)} asked for but the "
                            f"cache holds views {cached}; rebuild with the same data.num_views / "
                            f"view_sampling") from None
        data = self._shard(shard)
        if rows == list(range(rows[0], rows[0] + len(rows))):
            feats = data[rows[0]:rows[0] + len(rows)].clone()
        else:
            feats = data[torch.tensor(rows)]
        return feats, [tuple(sizes[pos[v]]) for v in views], (int(hw[0]), int(hw[1]))


def attach_feature_cache(dataset, cfg: Config, config_path: str | None = None) -> FeatureCache:
    """Make ``dataset`` (a RecordDataset or a MixedDataset of them) read features from
    ``cfg.data.feature_cache`` instead of images; every record is looked up now."""
    cache = FeatureCache(cfg.data.feature_cache, cfg, config_path)
    parts = getattr(dataset, "datasets", [dataset])
    for part in parts:
        cache.check(part.records)
        part.feature_cache = cache
    return cache
