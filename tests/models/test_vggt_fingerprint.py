"""The encoder-weights fingerprint the feature cache is keyed by, and what counts as a hub id."""

from __future__ import annotations

import pytest
import torch

from vqkit.config.schema import EncoderConfig
from vqkit.errors import CheckpointError
from vqkit.models.vggt.fingerprint import weights_fingerprint
from vqkit.models.vggt.weights import is_hub_id, resolve_checkpoint


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
    assert weights_fingerprint(EncoderConfig(weights=str(path))).startswith("file:")
    assert weights_fingerprint(EncoderConfig(weights=str(tmp_path))) == weights_fingerprint(
        EncoderConfig(weights=str(path)))  # a folder holding it: the same file
