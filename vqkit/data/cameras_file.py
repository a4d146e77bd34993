"""Cameras files: a JSON list of ``{"image", "R", "t", "K", "depth_hist"}``, one per view, in the records'
conventions (the ``cameras.json`` that ``vqkit synth`` writes beside a room's views and ``vqkit ask --cameras``
reads), checked like a record's ``geom_token``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vqkit.data.schema import Geometry, RecordContext, geometry_of
from vqkit.errors import DataError


def read_cameras(path: str | os.PathLike) -> dict[str, dict]:
    """Cameras by image file name from a cameras file: a JSON list of ``{"image", "R", "t", "K",
    "depth_hist"}`` (the ``cameras.json`` that ``vqkit synth`` writes beside a room's views)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: cameras file not found")
    try:
        return {Path(c["image"]).name: c for c in json.loads(path.read_text())}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: expected a JSON list of cameras with 'image', R, t, K, depth_hist ({e})") from None


def cameras_beside(images: list[str]) -> tuple[Path, dict[str, dict]] | None:
    """(path, cameras by name) of the ``cameras.json`` beside the first image, when it reads and
    lists every image; else None."""
    path = Path(images[0]).parent / "cameras.json"
    if not path.is_file():
        return None
    try:
        by_name = read_cameras(path)
    except DataError:
        return None
    return (path, by_name) if all(Path(p).name in by_name for p in images) else None


def geometry_from_cameras(by_name: dict[str, dict], images: list[str], depth_bins: int | None,
                          source: str | os.PathLike) -> Geometry:
    """The :class:`Geometry` of ``images`` (matched by file name) from :func:`read_cameras`' result,
    checked like a record's ``geom_token``; errors name ``source`` and the field."""
    missing = [Path(p).name for p in images if Path(p).name not in by_name]
    if missing:
        raise DataError(f"{source}: no camera for {', '.join(missing)}")
    chosen = [by_name[Path(p).name] for p in images]
    token = {key: [c.get(key) for c in chosen] for key in ("R", "t", "K", "depth_hist")}
    if any(v is None for v in token["depth_hist"]):
        del token["depth_hist"]
    ctx = RecordContext(Path(source), Path(source).parent, allow_outside_root=True, depth_bins=depth_bins,
               check_files=False)
    return geometry_of(token, len(images), ctx)
