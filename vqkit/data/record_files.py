"""Reading record files: a path or glob to files, and a file to its JSON objects with their line numbers
(``.jsonl``: one object per line; ``.json``: a top-level array, each element at the line it starts on);
:func:`read_records_once`, within which each records file is read and validated once
(:func:`vqkit.data.schema.load_records` consults it)."""

from __future__ import annotations

import contextlib
import glob as globlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vqkit.errors import DataError
from vqkit.utils.files import json_error_text


def expand_paths(pattern: str) -> list[Path]:
    """Files matching a path or glob (``**`` allowed), sorted; an error when nothing matches."""
    pattern = os.path.expanduser(pattern)
    if any(c in pattern for c in "*?["):
        files = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))
        if not files:
            raise DataError(f"{pattern}: no file matches this pattern")
        return files
    path = Path(pattern)
    if not path.is_file():
        raise DataError(f"{pattern}: record file not found")
    return [path]


def iter_json_objects(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, parsed object) for every record of a ``.jsonl`` (one per non-empty line) or ``.json``
    (a top-level array) file. A line that is not valid JSON yields ``(line, DataError)`` so the
    caller decides to raise or skip; an unreadable ``.json`` raises at once."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if path.suffix.lower() == ".json" or (path.suffix.lower() != ".jsonl" and text.lstrip().startswith("[")):
        yield from _iter_json_array(path, text)
        return
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield lineno, json.loads(raw)
        except json.JSONDecodeError as e:
            yield lineno, DataError(f"{path}:{lineno}: not valid JSON ({json_error_text(e)})")


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Walk a JSON array element by element so each record knows its line number."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    i = 0
    n = len(text)
    while i < n and text[i] in ws:
        i += 1
    if i >= n or text[i] != "[":
        raise DataError(f"{path}:1: a .json record file must hold a JSON array of records")
    i += 1
    line, counted = 1, 0  # lines counted up to ``counted``: counting from the start each time is quadratic
    while True:
        while i < n and text[i] in ws:
            i += 1
        if i < n and text[i] == "]":
            return
        line, counted = line + text.count("\n", counted, i), i
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({json_error_text(e)})") from None
        yield line, obj
        while i < n and text[i] in ws:
            i += 1
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] == "]":
            return
        else:
            raise DataError(f"{path}:{text.count(chr(10), 0, i) + 1}: not valid JSON "
                            f"(expected ',' or ']' after a record)")


# (files with their size and mtime, load options) -> (records, their LoadReport), while
# read_records_once() is open; None outside it.
_READ_ONCE: dict[tuple, tuple[list, Any]] | None = None


@contextlib.contextmanager
def read_records_once() -> Iterator[None]:
    """Within this block, :func:`~vqkit.data.schema.load_records` reads and validates each records file
    once: a later call for the same files, unchanged on disk (size, modification time), with the same
    options gets a new list of the first call's :class:`~vqkit.data.schema.Record` objects (which
    nothing in vqkit changes). For a pipeline that reads its records at every stage (``vqkit demo``:
    the aggregator's pretraining, the feature cache, two trainings, three evaluations); a block inside
    another shares the outer one's records."""
    global _READ_ONCE
    outermost = _READ_ONCE is None
    if outermost:
        _READ_ONCE = {}
    try:
        yield
    finally:
        if outermost:
            _READ_ONCE = None


def read_once_key(pattern: str, *options: Any) -> tuple | None:
    """What identifies a load inside :func:`read_records_once` (None outside it): the files with their
    size and modification time, and the load's options."""
    if _READ_ONCE is None:
        return None
    files = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in expand_paths(pattern))
    return (files, *options)


def read_earlier(key: tuple | None) -> tuple[list, Any] | None:
    """(records, report) of an earlier load with ``key`` in this :func:`read_records_once` block."""
    return None if key is None or _READ_ONCE is None else _READ_ONCE.get(key)


def remember(key: tuple | None, records: list, report: Any) -> None:
    if key is not None and _READ_ONCE is not None:
        _READ_ONCE[key] = (records, report)
