"""Frozen-encoder feature cache: ``vqkit cache-features --config FILE --out DIR``.

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

Writing (:func:`build_feature_cache`): batches of view sets (same view count and image shape)
through the encoder under ``torch.inference_mode()`` (bf16 autocast on CUDA), images decoded by
DataLoader workers, shards written atomically (temporary file + rename). An existing cache with the
same key is extended (only missing view sets are encoded); another key needs ``--overwrite``. Under
torchrun each rank encodes every WORLD_SIZE-th view set into its own shards, writes a partial index,
and rank 0 merges them into ``index.json`` after a barrier.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

from vqkit.cli import add_overrides_argument
from vqkit.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config import Config, DataConfig, EncoderConfig
    from vqkit.data.schema import Record

log = logging.getLogger("vqkit.cache")

CACHE_VERSION = 1
INDEX_FILE = "index.json"
FEATURES_KEY = "features"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# EncoderConfig fields that do not change the features: `frozen` (always true), `weights` (replaced
# by a fingerprint of the file, so moving the file does not invalidate the cache).
_SPEC_EXCLUDE = {"frozen", "weights"}


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


_FINGERPRINTS: dict[str, str] = {}


def weights_fingerprint(enc_cfg: "EncoderConfig") -> str:
    """A fingerprint of the encoder weights.

    A weights file: sha256 over its size, mtime and first MiB (cheap for a 5 GB checkpoint). A hub
    id that is not a local path: the id itself. Random init: sha256 of the seeded state dict (the
    init depends on the torch version, so the seed alone is not enough). Memoised per process.
    """
    from vqkit.models.vggt import WEIGHT_FILES

    if enc_cfg.weights:
        path = Path(enc_cfg.weights).expanduser()
        if path.is_dir():
            path = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), path)
        if not path.is_file():
            return f"hub:{enc_cfg.weights}"
        st = path.stat()
        memo = f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if memo not in _FINGERPRINTS:
            h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
            with open(path, "rb") as f:
                h.update(f.read(1 << 20))
            _FINGERPRINTS[memo] = "file:" + h.hexdigest()
        return _FINGERPRINTS[memo]
    fields = {k: v for k, v in dataclasses.asdict(enc_cfg).items() if k not in _SPEC_EXCLUDE}
    memo = "init:" + _sha(fields) + ":" + torch.__version__
    if memo not in _FINGERPRINTS:
        from vqkit.models.vggt import Aggregator

        encoder = Aggregator.from_config(enc_cfg)
        h = hashlib.sha256()
        for name, tensor in sorted(encoder.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().contiguous().numpy().tobytes())
        _FINGERPRINTS[memo] = "init:" + h.hexdigest()
    return _FINGERPRINTS[memo]


def cache_spec(cfg: "Config", dtype: str = "float16") -> dict[str, Any]:
    """Everything that determines the cached features (stored in index.json, hashed into ``key``)."""
    enc = {k: v for k, v in dataclasses.asdict(cfg.model.encoder).items() if k not in _SPEC_EXCLUDE}
    return {"version": CACHE_VERSION, "encoder": enc, "weights": weights_fingerprint(cfg.model.encoder),
            "image_size": cfg.data.image_size, "resize_mode": cfg.data.resize_mode, "dtype": dtype}


def spec_key(spec: dict[str, Any]) -> str:
    return _sha(spec)


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


def cached_views(num_available: int, data_cfg: "DataConfig") -> list[int]:
    """View indices of a record that the cache stores: what the dataset picks without dropout
    (evaluation-mode choice), or every view when training samples them at random."""
    from vqkit.data.dataset import choose_views

    if data_cfg.view_sampling == "random":
        return list(range(num_available))
    return choose_views(num_available, data_cfg.num_views, data_cfg.view_sampling, 0.0, False,
                        np.random.default_rng(0))


def view_set_key(paths: Sequence[str]) -> str:
    """sha256 over the image files' (absolute path, size, mtime): changes when a file changes."""
    items = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise DataError(f"{p}: image not found") from None
        items.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return _sha(items)


def _record_views(rec: "Record", data_cfg: "DataConfig") -> tuple[list[int], str]:
    views = cached_views(rec.num_views, data_cfg)
    return views, view_set_key([rec.images[v] for v in views])


# --------------------------------------------------------------------------------------------
# Shards (safetensors, memory-mapped on read)
# --------------------------------------------------------------------------------------------


def _write_shard(path: Path, features: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write one shard atomically: a temporary file in the same folder, then rename."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({FEATURES_KEY: features.contiguous()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _map_shard(path: Path) -> torch.Tensor:
    """The shard's feature tensor [rows, P, C], memory-mapped (copy-on-write, so read-only pages
    are shared between processes and torch gets a writable array without a warning)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
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
    arr = np.memmap(path, dtype=np.int16, mode="c", offset=8 + n + start, shape=shape)
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

    def __init__(self, folder: str | Path, cfg: "Config", config_path: str | None = None):
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

    def entry(self, rec: "Record") -> list:
        """The cache entry ``[shard, row, n, views, sizes, hw]`` of a record (memoised by image list)."""
        images = tuple(rec.images)
        found = self._by_images.get(images)
        if found is None:
            views, key = _record_views(rec, self.data_cfg)
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

    def check(self, records: Iterable["Record"]) -> int:
        """Look every record up now (so a stale cache fails before training); returns the count."""
        n = 0
        for rec in records:
            self.entry(rec)
            n += 1
        return n

    def features(self, rec: "Record", views: Sequence[int]) -> tuple[torch.Tensor, list[tuple[int, int]], tuple[int, int]]:
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


def attach_feature_cache(dataset, cfg: "Config", config_path: str | None = None) -> FeatureCache:
    """Make ``dataset`` (a RecordDataset or a MixedDataset of them) read features from
    ``cfg.data.feature_cache`` instead of images; every record is looked up now."""
    cache = FeatureCache(cfg.data.feature_cache, cfg, config_path)
    parts = getattr(dataset, "datasets", [dataset])
    for part in parts:
        cache.check(part.records)
        part.feature_cache = cache
    return cache


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _ViewSet:
    key: str
    paths: list[str]
    views: list[int]
    where: str


class _ViewSetImages(torch.utils.data.Dataset):
    """Decodes a view set's images like the dataset does (same resize, same padding to a common
    size). Item -> (index, images [V, 3, H, W], source sizes [(w, h)])."""

    def __init__(self, items: list[_ViewSet], image_size: int, resize_mode: str):
        self.items, self.image_size, self.resize_mode = items, image_size, resize_mode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from vqkit.data.dataset import _pad_to_common
        from vqkit.data.images import load_image

        item = self.items[i]
        images, sizes = [], []
        for p in item.paths:
            try:
                img, plan = load_image(p, self.image_size, self.resize_mode)
            except DataError as e:
                raise DataError(f"{item.where}: {e}") from None
            images.append(img)
            sizes.append(plan.src)
        images, _ = _pad_to_common(images)
        return i, torch.stack(images), sizes


def _collect_view_sets(cfg: "Config", splits: Sequence[str]) -> tuple[list[_ViewSet], int]:
    """Unique view sets over the records of ``splits`` (first appearance order) and the record count."""
    from vqkit.data.schema import load_records

    seen: dict[str, _ViewSet] = {}
    n_records = 0
    for split in splits:
        sources = cfg.data.train if split == "train" else cfg.data.val
        for src in sources:
            records = load_records(src.path, image_root=cfg.data.image_root,
                                   allow_outside_root=cfg.data.allow_outside_root, on_error=cfg.data.on_error,
                                   depth_bins=cfg.model.geometry.depth_bins)
            memo: dict[tuple[str, ...], str] = {}
            for rec in records:
                n_records += 1
                images = tuple(rec.images)
                if images in memo:
                    continue
                views, key = _record_views(rec, cfg.data)
                memo[images] = key
                if key not in seen:
                    seen[key] = _ViewSet(key, [rec.images[v] for v in views], views, rec.where)
    return list(seen.values()), n_records


def _dist() -> tuple[int, int]:
    """(rank, world_size); initialises a gloo/nccl group under torchrun when none exists."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def build_feature_cache(cfg: "Config", out_dir: str | Path, splits: Sequence[str] = ("train", "val"), *,
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
        device: encoder device (default: CUDA when available, else CPU).

    Returns the folder. An existing cache with the same key is extended: only view sets that are
    not in it yet are encoded.
    """
    from tqdm.auto import tqdm

    from vqkit.models.vlm import build_encoder

    if dtype not in DTYPES:
        raise ConfigError(f"feature cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    for split in splits:
        if split not in ("train", "val"):
            raise ConfigError(f"split must be train or val, got {split!r}")
    out = Path(out_dir)
    rank, world = _dist()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    spec = cache_spec(cfg, dtype)
    key = spec_key(spec)

    # Existing cache: extend it when the key matches, refuse otherwise (unless overwrite).
    old_entries: dict[str, list] = {}
    old_shards: list[str] = []
    if (out / INDEX_FILE).is_file():
        index = json.loads((out / INDEX_FILE).read_text())
        if index.get("key") == key and not overwrite:
            old_entries, old_shards = index["entries"], index["shards"]
        elif not overwrite:
            diffs = spec_differences(index.get("spec", {}), spec)
            raise CheckpointError(f"{out} holds a feature cache for another encoder/config "
                                  f"({'; '.join(diffs) or 'key differs'}); pass --overwrite to replace it")
    _barrier()
    if overwrite and rank == 0 and out.is_dir():
        for p in list(out.glob("shard_*.safetensors")) + [out / INDEX_FILE]:
            if p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    _barrier()

    all_sets, n_records = _collect_view_sets(cfg, splits)
    todo = [vs for vs in all_sets if vs.key not in old_entries]
    mine = todo[rank::world]
    encoder = build_encoder(cfg.model.encoder, device=device)
    layers = list(cfg.model.encoder.layers)
    store = DTYPES[dtype]
    # Shard names continue after the existing ones, so extending never overwrites a shard.
    start_id = 1 + max([int(Path(s).stem.split("_")[-1]) for s in old_shards] or [-1])
    workers = cfg.data.num_workers if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        _ViewSetImages(mine, cfg.data.image_size, cfg.data.resize_mode), batch_size=None, shuffle=False,
        num_workers=workers, prefetch_factor=4 if workers > 0 else None)

    entries: dict[str, list] = {}
    shards: list[str] = []
    buffer: list[torch.Tensor] = []
    buffered_rows = 0
    shape: tuple[int, int] | None = None
    pending: dict[tuple, list] = {}  # (n views, H, W) -> [(index, images, sizes)]

    def flush_shard() -> None:
        nonlocal buffer, buffered_rows
        if not buffer:
            return
        name = f"shard_{rank:02d}_{start_id + len(shards):05d}.safetensors"
        _write_shard(out / name, torch.cat(buffer), {"key": key, "format": "pt"})
        shards.append(name)
        buffer, buffered_rows = [], 0

    def encode(group: list) -> None:
        nonlocal buffered_rows, shape
        images = torch.stack([g[1] for g in group]).to(device)  # [G, V, 3, H, W]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if images.device.type == "cuda" else \
            torch.autocast("cpu", enabled=False)
        with torch.inference_mode(), autocast:
            feats = encoder.encode(images, layers=layers)  # [G, V, P, C]
        feats = feats.to("cpu", store)
        if not torch.isfinite(feats).all():
            raise DataError(f"{mine[group[0][0]].where}: non-finite encoder features in {dtype} "
                            f"(try --dtype bfloat16)")
        if shape is None:
            shape = tuple(feats.shape[-2:])
        elif tuple(feats.shape[-2:]) != shape:
            raise DataError(f"{mine[group[0][0]].where}: features of shape {tuple(feats.shape[-2:])} differ "
                            f"from {shape}: the cache needs one image shape for all records "
                            f"(use data.resize_mode: pad, or images of one aspect ratio)")
        H, W = images.shape[-2:]
        for (i, _, sizes), f in zip(group, feats):
            vs = mine[i]
            entries[vs.key] = [None, buffered_rows, len(vs.views), vs.views, [list(s) for s in sizes],
                               [int(H), int(W)], len(shards)]
            buffer.append(f)
            buffered_rows += f.shape[0]
            if buffered_rows >= shard_rows:
                flush_shard()

    started = time.time()
    bar = tqdm(total=len(mine), desc=f"cache-features{f' rank {rank}' if world > 1 else ''}", unit="set",
               disable=not progress, mininterval=1.0, dynamic_ncols=True)
    for i, images, sizes in loader:
        gkey = tuple(images.shape)
        pending.setdefault(gkey, []).append((i, images, sizes))
        if len(pending[gkey]) >= batch_size:
            encode(pending.pop(gkey))
        bar.update(1)
    for gkey in list(pending):
        encode(pending.pop(gkey))
    flush_shard()
    bar.close()
    # Entries recorded the shard *position* (last field) at the time rows were buffered; resolve to names.
    part = {k: [shards[v[6]], v[1], v[2], v[3], v[4], v[5]] for k, v in entries.items()}
    meta = {"shape": list(shape) if shape else None, "entries": part, "seconds": time.time() - started}

    if world > 1:
        (out / f".index.rank{rank}.json").write_text(json.dumps(meta))
        _barrier()
        if rank != 0:
            _barrier()
            return out
        parts = [json.loads((out / f".index.rank{r}.json").read_text()) for r in range(world)]
    else:
        parts = [meta]

    # Rank 0: merge old and new entries into one index, written atomically.
    shard_names = list(old_shards)
    merged: dict[str, list] = {}
    for k, (s, row, n, views, sizes, hw) in old_entries.items():
        merged[k] = [s, row, n, views, sizes, hw]
    feature_shape = None
    if old_entries:
        feature_shape = json.loads((out / INDEX_FILE).read_text())["feature_shape"]
    for p in parts:
        if p["shape"] is not None:
            if feature_shape is not None and list(p["shape"]) != list(feature_shape):
                raise DataError(f"{out}: new features have shape {p['shape']} but the cache holds "
                                f"{feature_shape}; rebuild with --overwrite")
            feature_shape = p["shape"]
        for k, v in p["entries"].items():
            if v[0] not in shard_names:
                shard_names.append(v[0])
            merged[k] = v
    names = sorted(shard_names)
    pos = {name: i for i, name in enumerate(names)}
    entries_out = {}
    for k, v in merged.items():
        s = v[0] if isinstance(v[0], str) else old_shards[v[0]]
        entries_out[k] = [pos[s], *v[1:]]
    index = {
        "spec": spec, "key": key, "feature_shape": feature_shape, "dtype": dtype,
        "data": {"num_views": cfg.data.num_views, "view_sampling": cfg.data.view_sampling,
                 "image_size": cfg.data.image_size, "resize_mode": cfg.data.resize_mode},
        "note": "global attention saw every cached view of a set; view dropout drops rows afterwards",
        "shards": names, "entries": entries_out,
        "stats": {"records": n_records, "view_sets": len(all_sets), "encoded_now": len(todo),
                  "seconds": max(p["seconds"] for p in parts)},
    }
    tmp = out / f".{INDEX_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, out / INDEX_FILE)
    if world > 1:
        for r in range(world):
            (out / f".index.rank{r}.json").unlink(missing_ok=True)
        _barrier()
    return out


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config

    parser = argparse.ArgumentParser(
        prog="vqkit cache-features",
        description="Run the frozen aggregator once per unique (scene, view set) and store its features, "
                    "so training with data.feature_cache: DIR skips the encoder.",
        epilog="example: vqkit cache-features --config configs/demo.yaml --out data/synth/features "
               "&& vqkit-train --config configs/demo.yaml --set data.feature_cache=data/synth/features")
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--out", required=True, help="cache folder (index.json + shards)")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--split", choices=["train", "val", "both"], default="both", help="which sources")
    parser.add_argument("--batch-size", type=int, default=16, help="view sets per encoder call")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float16", help="storage dtype")
    parser.add_argument("--workers", type=int, default=None, help="image decoding workers (default data.num_workers)")
    parser.add_argument("--shard-rows", type=int, default=8192, help="views per shard file")
    parser.add_argument("--overwrite", action="store_true", help="replace a cache built for another encoder/config")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    splits = ("train", "val") if args.split == "both" else (args.split,)
    splits = tuple(s for s in splits if (cfg.data.train if s == "train" else cfg.data.val))
    if not splits:
        raise ConfigError(f"{args.config}: no data sources for --split {args.split}")
    out = build_feature_cache(cfg, args.out, splits, batch_size=args.batch_size, dtype=args.dtype,
                              overwrite=args.overwrite, shard_rows=args.shard_rows, num_workers=args.workers,
                              progress=not args.no_progress)
    if _dist()[0] == 0:
        index = read_index(out)
        st = index["stats"]
        print(f"{out}: {len(index['entries'])} view sets ({st['encoded_now']} encoded now, "
              f"{st['records']} records) in {len(index['shards'])} shard(s), features "
              f"{index['feature_shape']} {index['dtype']}, {st['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    from vqkit.cli import run_main

    sys.exit(run_main(main, None, "vqkit cache-features"))
