"""vqkit.data.record_files.read_records_once: inside the block each records file is read and validated
once per set of options (a changed file, or other options, is read again); outside it, every load reads."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from helpers import make_corpus

import vqkit.data.schema as schema
from vqkit.data.record_files import read_records_once
from vqkit.data.schema import LoadReport, load_records


@pytest.fixture
def reads(monkeypatch) -> Counter:
    """How many times each file is parsed."""
    counts: Counter = Counter()
    parse = schema.iter_json_objects

    def counting(path):
        counts[path.name] += 1
        return parse(path)

    monkeypatch.setattr(schema, "iter_json_objects", counting)
    return counts


def test_each_file_is_read_once_inside_the_block(tmp_path, reads):
    corpus = make_corpus(tmp_path / "data", n=3)
    path = str(corpus.path)
    with read_records_once():
        first = load_records(path)
        second = load_records(path)
        assert second == first and second is not first  # a list of its own, of the same records
        assert all(a is b for a, b in zip(first, second, strict=True))
        second.pop()
        assert len(load_records(path)) == 3  # what a caller does to its list stays with it
        with read_records_once():  # an inner block shares the outer one's records
            load_records(path)
        assert reads == {"records.jsonl": 1}
        load_records(path, depth_bins=16)  # other options: read and checked again
        assert reads == {"records.jsonl": 2}
        lines = corpus.path.read_text().splitlines()
        corpus.path.write_text("\n".join(lines[:2]) + "\n")  # the file changed on disk
        assert len(load_records(path)) == 2 and reads == {"records.jsonl": 3}
    load_records(path)
    load_records(path)
    assert reads == {"records.jsonl": 5}  # outside the block every load reads


def test_a_skipping_load_reports_its_skips_every_time(tmp_path, reads):
    corpus = make_corpus(tmp_path / "data", n=3)
    with open(corpus.path, "a") as f:
        f.write(json.dumps({"images": ["img/missing.png"], "question": "q?", "answer": "a"}) + "\n")
    with read_records_once():
        reports = [LoadReport(), LoadReport()]
        for report in reports:
            assert len(load_records(str(corpus.path), on_error="skip", report=report)) == 3
    assert [(r.num_loaded, r.num_skipped) for r in reports] == [(3, 1), (3, 1)]
    assert reads == {"records.jsonl": 1}
