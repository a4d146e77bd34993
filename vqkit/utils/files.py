"""Files vqkit writes and reads: atomic writes, JSON lines, JSON without NaN, safetensors.

Every result file is written to a temporary name in the same folder and renamed into place, so a
reader (``vqkit monitor``, a notebook, a resumed run) never sees half a file and a crash leaves the
previous version intact. Every safetensors file goes through :func:`write_safetensors`, so identical
tensors and metadata give identical bytes.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from vqkit.errors import DataError


def temporary_path(path: str | os.PathLike) -> Path:
    """A hidden sibling of ``path`` for an atomic write (unique per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path`` (atomic on POSIX).
    The parent folder is created; a failed write leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically (NaN/inf written as null)."""
    return write_text_atomic(path, json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict], compact: bool = True,
                       ensure_ascii: bool = True) -> int:
    """Write one JSON object per line atomically; returns the number of lines."""
    separators = (",", ":") if compact else None
    lines = [json.dumps(r, separators=separators, ensure_ascii=ensure_ascii) for r in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def json_error_text(error: json.JSONDecodeError) -> str:
    """A JSON parse error as "<what> at column N" (json's own messages for some errors already end in
    "at", as in "Invalid control character at", which would otherwise read "at at column")."""
    return f"{error.msg.removesuffix(' at')} at column {error.colno}"


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content; a missing or malformed file raises :class:`DataError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({json_error_text(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def iter_jsonl(path: str | os.PathLike, *, skip_bad: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each JSON object of a JSON-lines file (blank lines ignored).

    ``skip_bad=False``: a line that is not a JSON object raises :class:`DataError` naming the file and
    line. ``skip_bad=True``: such lines are left out, for logs that a running process is still
    appending to (its last line may be half written).
    """
    path = Path(path)
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_bad:
                    continue
                raise DataError(f"{path}:{line_no}: not valid JSON ({json_error_text(e)})") from None
            if not isinstance(row, dict):
                if skip_bad:
                    continue
                raise DataError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, row


def read_jsonl(path: str | os.PathLike, *, skip_bad: bool = False) -> list[dict]:
    """The JSON objects of a JSON-lines file (see :func:`iter_jsonl`)."""
    return [row for _, row in iter_jsonl(path, skip_bad=skip_bad)]


def read_safetensors_header(f) -> tuple[dict, int]:
    """The JSON header of a safetensors file open for binary reading (the file is left just past it)
    and the offset where its tensor data begins (``data_offsets`` count from there). ValueError when
    the file does not start like one."""
    raw = f.read(8)
    if len(raw) != 8:
        raise ValueError("shorter than a safetensors header")
    (size,) = struct.unpack("<Q", raw)
    header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    return header, 8 + size


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file``, atomically and byte-stable: identical tensors and metadata give
    identical bytes, in any process. safetensors lays the tensors out in a fixed order (by dtype, then
    name) but writes the ``__metadata__`` entries in the order of a hash map that is seeded per
    process; the header is rewritten with them sorted by key."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata) if metadata else None)
        _sort_safetensors_metadata(tmp)

    return write_atomic(path, write)


def _sort_safetensors_metadata(path: Path) -> None:
    """Rewrite a safetensors file's header with its ``__metadata__`` keys sorted (in place when the
    header keeps its length, as it does: the same keys and values in another order)."""
    with open(path, "r+b") as f:
        header, data_start = read_safetensors_header(f)
        metadata = header.get("__metadata__")
        if not metadata:
            return
        header["__metadata__"] = dict(sorted(metadata.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        text += b" " * (-len(text) % 8)  # safetensors pads its header with spaces to 8 bytes
        if len(text) == data_start - 8:
            f.seek(8)
            f.write(text)
            return
        f.seek(data_start)
        rewritten = temporary_path(path)
        try:
            with open(rewritten, "wb") as out:
                out.write(struct.pack("<Q", len(text)) + text)
                while chunk := f.read(1 << 24):
                    out.write(chunk)
            os.replace(rewritten, path)
        finally:
            rewritten.unlink(missing_ok=True)


def json_sha256(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys): a key that changes when any value changes."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
