"""vqkit.utils.files: writes that are whole or absent, the one JSON-lines reader, and safetensors files
whose bytes are the same for the same tensors and metadata in any process."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import subprocess
import sys

import pytest
import torch
from helpers import REPO, TINY_PRETRAIN_ENCODER
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vqkit.errors import DataError
from vqkit.utils.files import (
    iter_jsonl,
    json_sha256,
    read_jsonl,
    read_safetensors_header,
    write_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_safetensors,
    write_text_atomic,
)


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_text_atomic(path, "first")
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"ok": 1})

    def broken(tmp):
        tmp.write_text('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_json_has_no_nan_and_jsonl_round_trips(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": math.nan, "b": [1.5, math.inf], "c": (1, 2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [1.5, None], "c": [1, 2]}
    rows = [{"x": 1}, {"y": [1, 2], "z": "é"}]
    assert write_jsonl_atomic(tmp_path / "r.jsonl", rows) == 2
    assert (tmp_path / "r.jsonl").read_text().splitlines()[0] == '{"x":1}'
    assert read_jsonl(tmp_path / "r.jsonl") == rows


def test_the_jsonl_reader_names_the_bad_line_or_skips_it_in_a_growing_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n\n[1, 2]\n{"step": 2}\n{"step": 3, "lo')
    with pytest.raises(DataError, match=r"metrics.jsonl:3: expected a JSON object"):
        read_jsonl(path)
    assert [n for n, _ in iter_jsonl(path, skip_bad=True)] == [1, 4]
    assert read_jsonl(path, skip_bad=True) == [{"step": 1}, {"step": 2}]


def test_json_sha256_ignores_key_order_and_sees_any_change():
    assert json_sha256({"a": 1, "b": [1, 2]}) == json_sha256({"b": [1, 2], "a": 1})
    assert json_sha256({"a": 1}) != json_sha256({"a": 1.5})


def test_json_errors_read_once_at_column(tmp_path):
    """json's "Invalid control character at" used to give "... at at column 16"."""
    from vqkit.data.schema import load_records
    from vqkit.utils.files import json_error_text, read_json

    try:
        json.loads('{"question": "a\x01b"}')
    except json.JSONDecodeError as e:
        assert json_error_text(e) == "Invalid control character at column 16"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a\x01b"}\n')
    for read in (read_jsonl, load_records, read_json):
        with pytest.raises(DataError) as e:
            read(bad)
        assert str(e.value) == f"{bad}:1: not valid JSON (Invalid control character at column 16)"
        assert "at at" not in str(e.value)
    with pytest.raises(DataError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")


# Written by separate processes: safetensors orders a header's metadata keys by a hash map seeded per
# process, so one process writing twice would not show it. Each process writes a file of mixed dtypes
# with six metadata keys, and the encoder's weights file (three keys).
METADATA = {"format": "pt", "vqkit_version": "0.0.0", "key": "abc", "vggt": json.dumps({"a": [1, 2]}),
            "note": "caf\u00e9 \"quoted\"", "step": "12"}
WRITE_IN_A_FRESH_PROCESS = f"""
import sys, torch
from pathlib import Path
from vqkit.config import EncoderConfig
from vqkit.utils.files import write_safetensors
from vqkit.vggt import VGGT
from vqkit.vggt.weights_file import save_vggt_file
out = Path(sys.argv[1])
tensors = {{"layer.1.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
           "layer.0.bias": torch.arange(5, dtype=torch.int64), "z": torch.ones(2, dtype=torch.bfloat16),
           "a": torch.zeros(3, dtype=torch.float16)}}
write_safetensors(out / "tensors.safetensors", tensors, {METADATA!r})
heads = {{"dpt_features": 8, "dpt_out_channels": [4, 8, 16, 16], "camera_trunk_depth": 1, "camera_num_heads": 2}}
cfg = EncoderConfig(**{TINY_PRETRAIN_ENCODER!r})
torch.manual_seed(0)
save_vggt_file(VGGT.from_config(cfg, **heads), out / "vggt.safetensors", cfg, head_sizes=heads, image_size=56,
               resize_mode="crop", extra={{"step": 3}})
"""


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_safetensors_files_are_byte_identical_across_processes(tmp_path):
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        subprocess.run([sys.executable, "-c", WRITE_IN_A_FRESH_PROCESS, str(folder)], check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    for name in ("tensors.safetensors", "vggt.safetensors"):
        assert _sha256(folders[0] / name) == _sha256(folders[1] / name), name
    written = folders[0] / "tensors.safetensors"
    with open(written, "rb") as f:
        header, _ = read_safetensors_header(f)
    assert list(header["__metadata__"]) == sorted(METADATA)
    with safe_open(str(written), "pt") as f:  # safetensors reads it as it wrote it
        assert f.metadata() == METADATA
        assert torch.equal(f.get_tensor("layer.1.weight"), torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert sorted(load_file(str(written))) == ["a", "layer.0.bias", "layer.1.weight", "z"]


def test_a_header_of_another_length_is_rewritten_whole(tmp_path):
    """Metadata sorted when the new header's length differs from the old one's (here the old one is
    indented JSON): the file is rewritten, the tensors unchanged, the bytes those of a direct write."""
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.int32)}
    metadata = {"zeta": "1", "alpha": "2", "mid": "3"}
    plain = tmp_path / "plain.safetensors"
    save_file(tensors, str(plain), metadata=metadata)
    with open(plain, "rb") as f:
        header, start = read_safetensors_header(f)
        data = f.read()
    header["__metadata__"] = dict(reversed(list(header["__metadata__"].items())))
    text = json.dumps(header, indent=2).encode()
    text += b" " * (-len(text) % 8)
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(struct.pack("<Q", len(text)) + text + data)
    assert len(text) != start - 8
    from vqkit.utils.files import _sort_safetensors_metadata

    _sort_safetensors_metadata(odd)
    assert odd.read_bytes() == write_safetensors(tmp_path / "direct.safetensors", tensors, metadata).read_bytes()
    assert all(torch.equal(load_file(str(odd))[k], v) for k, v in tensors.items())


def test_vqkit_writes_safetensors_only_through_write_safetensors():
    """Every safetensors file vqkit writes is byte-stable: no module but vqkit.utils.files calls the
    writers of safetensors itself."""
    writers = re.compile(r"\bsave_file\(|safetensors\.torch import[^\n]*\bsave\b|\bsave_model\(")
    found = [str(p.relative_to(REPO)) for p in (REPO / "vqkit").rglob("*.py")
             if p.name != "files.py" and writers.search(p.read_text())]
    assert found == []

