"""A fingerprint of the encoder's weights: what the feature cache is keyed by, so cached features are
never used with another encoder (another weights file, or another random init)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vqkit.errors import CheckpointError
from vqkit.utils.files import json_sha256, read_safetensors_header
from vqkit.vggt.aggregator import Aggregator
from vqkit.vggt.weights import is_hub_id, resolve_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import EncoderConfig

# EncoderConfig fields that do not change the features: `frozen` (always true), `weights` (replaced
# by a fingerprint of the file, so moving the file does not invalidate a cache), `compile` (the same
# operations, compiled).
NOT_IN_FINGERPRINT = {"frozen", "weights", "compile"}

_FINGERPRINTS: dict[str, str] = {}

#: Weights files up to this size are fingerprinted by their content (the demo's aggregator is ~2 MB and
#: hashes in milliseconds); larger ones, such as VGGT-1B's 5 GB, by size, mtime and first MiB.
CONTENT_HASH_MAX_BYTES = 256 << 20


def _safetensors_digest(path: Path) -> str | None:
    """sha256 over a safetensors file's metadata (keys sorted) and its tensors by name (name, dtype,
    shape, bytes); None when the file is not one. Not over the raw bytes: safetensors itself orders
    the metadata keys differently from one process to the next, so the same weights saved twice by
    another writer differ (vqkit's own, :func:`vqkit.utils.files.write_safetensors`, sorts them)."""
    try:
        with open(path, "rb") as f:
            header, _ = read_safetensors_header(f)
            body = f.read()
        h = hashlib.sha256(json.dumps(header.pop("__metadata__", None) or {}, sort_keys=True).encode())
        for name in sorted(header):
            begin, end = header[name]["data_offsets"]
            h.update(json.dumps([name, header[name]["dtype"], header[name]["shape"]]).encode())
            h.update(body[begin:end])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return h.hexdigest()


def _file_fingerprint(path: Path, st) -> str:
    if st.st_size <= CONTENT_HASH_MAX_BYTES:
        digest = _safetensors_digest(path) if path.suffix == ".safetensors" else None
        return "content:" + (digest or hashlib.sha256(path.read_bytes()).hexdigest())
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return "file:" + h.hexdigest()


def weights_fingerprint(enc_cfg: EncoderConfig) -> str:
    """A fingerprint of the encoder weights.

    A weights file (or a folder holding one) up to :data:`CONTENT_HASH_MAX_BYTES`: sha256 of its content
    (a safetensors file's tensors and metadata, :func:`_safetensors_digest`; another file's bytes), so
    the same weights written again (a rerun of a seeded ``vqkit pretrain-encoder``, a copy) keep
    their cache. A larger one: sha256 over its size, mtime and first MiB (reading all of a 5 GB
    checkpoint would take longer than some runs that use the cache). A hub id
    (:func:`vqkit.vggt.weights.is_hub_id`) that is not a local path: the id itself. A path-like
    value that is not there (``/ckpts/model.pt``, ``model.safetensors``) is a CheckpointError, never
    recorded as a hub id. Random init: sha256 of the seeded state dict (the init depends on the torch
    version, so the seed alone is not enough). Memoised per process.
    """
    if enc_cfg.weights:
        if is_hub_id(enc_cfg.weights) and not Path(enc_cfg.weights).expanduser().exists():
            return f"hub:{enc_cfg.weights}"
        try:
            path = resolve_checkpoint(enc_cfg.weights)
        except CheckpointError as e:
            raise CheckpointError(f"model.encoder.weights: {e}") from None
        st = path.stat()
        memo = f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if memo not in _FINGERPRINTS:
            _FINGERPRINTS[memo] = _file_fingerprint(path, st)
        return _FINGERPRINTS[memo]
    fields = {k: v for k, v in dataclasses.asdict(enc_cfg).items() if k not in NOT_IN_FINGERPRINT}
    memo = "init:" + json_sha256(fields) + ":" + torch.__version__
    if memo not in _FINGERPRINTS:
        encoder = Aggregator.from_config(enc_cfg)
        h = hashlib.sha256()
        for name, tensor in sorted(encoder.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().contiguous().numpy().tobytes())
        _FINGERPRINTS[memo] = "init:" + h.hexdigest()
    return _FINGERPRINTS[memo]
