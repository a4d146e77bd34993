"""vqkit.utils.files: writes that are whole or absent, and the one JSON-lines reader."""

from __future__ import annotations

import json
import math

import pytest

from vqkit.errors import DataError
from vqkit.utils.files import (
    iter_jsonl,
    json_sha256,
    read_jsonl,
    write_atomic,
    write_json_atomic,
    write_jsonl_atomic,
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
