"""The encoder-weights fingerprint the feature cache is keyed by, and what counts as a hub id."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from vqkit.config.schema import EncoderConfig
from vqkit.errors import CheckpointError
from vqkit.vggt import fingerprint
from vqkit.vggt.fingerprint import weights_fingerprint
from vqkit.vggt.weights import is_hub_id, resolve_checkpoint


def test_what_reads_as_a_hub_id():
    for hub in ("facebook/VGGT-1B", "facebook/VGGT-1B-Commercial", "Qwen/Qwen2.5-VL-3B"):
        assert is_hub_id(hub), hub
    for path in ("/ckpts/model.pt", "ckpts/vggt/model.pt", "ckpts/model.pt", "model.safetensors", "./vggt/x",
                 "~/vggt/model", "vggt", "ckpts/weights.pth", "org/name/"):
        assert not is_hub_id(path), path


def test_a_missing_local_weights_file_is_an_error_not_a_hub_id(tmp_path):
    """`/path/x.pt` that does not exist yet used to be fingerprinted as "hub:/path/x.pt" (and a run a
    moment later refused that cache as built for another encoder)."""
    for missing in (str(tmp_path / "ckpts" / "model.pt"), "model.safetensors", "ckpts/vggt/model.pt"):
        with pytest.raises(CheckpointError, match=r"^model.encoder.weights: .*checkpoint file not found \(a local "
                                                  r"path; a hub id reads like facebook/VGGT-1B\)$"):
            weights_fingerprint(EncoderConfig(weights=missing))
        with pytest.raises(CheckpointError, match="checkpoint file not found"):
            resolve_checkpoint(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"no model.safetensors or model.pt in this folder"):
        weights_fingerprint(EncoderConfig(weights=str(empty)))
    # a hub id stays a hub id (resolved when the encoder loads), and a file that exists is hashed
    assert weights_fingerprint(EncoderConfig(weights="facebook/VGGT-1B")) == "hub:facebook/VGGT-1B"
    path = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(2)}, path)
    assert weights_fingerprint(EncoderConfig(weights=str(path))).startswith("content:")
    assert weights_fingerprint(EncoderConfig(weights=str(tmp_path))) == weights_fingerprint(
        EncoderConfig(weights=str(path)))  # a folder holding it: the same file


def test_the_same_weights_written_again_keep_their_fingerprint(tmp_path, monkeypatch):
    """A seeded `vqkit pretrain-encoder` run again writes the same weights at a new time: its feature
    cache stays valid (the demo used to rebuild it, ~35 s). Other weights are another encoder. A file over
    CONTENT_HASH_MAX_BYTES is fingerprinted by size, mtime and first MiB instead, so a touch changes it."""
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(6.0)}, str(path))
    first = weights_fingerprint(EncoderConfig(weights=str(path)))
    os.utime(path, ns=(1, 1))
    save_file({"w": torch.arange(6.0)}, str(path))  # rewritten: new mtime, same bytes
    assert path.stat().st_mtime_ns != 1
    assert weights_fingerprint(EncoderConfig(weights=str(path))) == first
    save_file({"w": torch.arange(6.0) + 1}, str(path))
    assert weights_fingerprint(EncoderConfig(weights=str(path))) != first

    # The writer orders metadata keys as its hash map falls, differently in another process: files
    # written by hand with the keys in either order hold the same weights, so they share a key.
    data = torch.arange(4.0).numpy().tobytes()
    fingerprints = []
    for n, meta in enumerate(({"a": "1", "b": "2"}, {"b": "2", "a": "1"})):
        header = json.dumps({"__metadata__": meta, "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
        file = tmp_path / f"order{n}.safetensors"
        file.write_bytes(struct.pack("<Q", len(header)) + header.encode() + data)
        fingerprints.append(weights_fingerprint(EncoderConfig(weights=str(file))))
    assert (tmp_path / "order0.safetensors").read_bytes() != (tmp_path / "order1.safetensors").read_bytes()
    assert fingerprints[0] == fingerprints[1]

    monkeypatch.setattr(fingerprint, "CONTENT_HASH_MAX_BYTES", 0)
    os.utime(path, ns=(3, 3))  # not a stat the content fingerprints above were memoised under
    large = weights_fingerprint(EncoderConfig(weights=str(path)))
    assert large.startswith("file:")
    os.utime(path, ns=(2, 2))
    assert weights_fingerprint(EncoderConfig(weights=str(path))) not in (large, first)
