"""Shared machinery of the converters: view selection, image writing, atomic files, the scene loop.

Every converter works scene by scene. A scene is converted once into ``OUT/frames/<scene>/``
(``view_XX.jpg`` + ``scene.json``, the per-scene manifest that is written last and atomically, so it
doubles as the done-marker). Record files are then rebuilt from the manifests, so a second run with
the same options only reads the manifests (resumable), and an interrupted run resumes where it left.

Failures are per scene: a missing folder or file becomes a reason in the summary, never a traceback.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqkit import cameras as G
from vqkit.errors import DataError
from vqkit.utils.files import json_error_text, write_atomic, write_json_atomic

MANIFEST = "scene.json"
MAX_PROBLEMS = 20  # skipped inputs named in the printed report (prep_summary.json lists them all)
# Bumped when the content of a scene folder changes meaning, so stale folders are rebuilt.
MANIFEST_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def load_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning a missing or broken file into a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: not valid JSON ({json_error_text(e)})") from None


def read_matrix(path: Path, rows: int = 4) -> np.ndarray:
    """A whitespace-separated text matrix (ScanNet pose / intrinsic files) -> float64 [rows, 4].

    Parsing by hand is much faster than ``np.loadtxt`` and matters: a ScanNet scene has thousands of
    pose files. ``-inf`` / ``nan`` parse as floats (invalid ScanNet frames are all -inf).
    """
    try:
        values = [float(v) for v in Path(path).read_text().split()]
    except ValueError as e:
        raise DataError(f"{path}: not a matrix of numbers ({e})") from None
    if len(values) not in (rows * 4, 9):
        raise DataError(f"{path}: expected a {rows}x4 matrix, got {len(values)} numbers")
    if len(values) == 9:  # a bare 3x3 intrinsic
        return np.array(values, dtype=np.float64).reshape(3, 3)
    return np.array(values, dtype=np.float64).reshape(rows, 4)


def valid_poses(T: np.ndarray, atol: float = 1e-2) -> np.ndarray:
    """Usable camera-to-world poses [N, 4, 4] -> bool [N]: finite, with a proper rotation.

    ScanNet marks lost tracking with all -inf. Vectorised because a scene has thousands of frames.
    """
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    finite = np.all(np.isfinite(T), axis=(1, 2))
    R = np.where(finite[:, None, None], T[:, :3, :3], np.eye(3))
    ortho = np.all(np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)) <= atol, axis=(1, 2))
    return finite & ortho & (np.abs(np.linalg.det(R) - 1.0) < atol)


def valid_pose(T: np.ndarray) -> bool:
    """One pose: see :func:`valid_poses`."""
    return bool(valid_poses(T)[0])


# ----------------------------------------------------------------------------------------------
# View selection
# ----------------------------------------------------------------------------------------------


def select_views(c2w: np.ndarray, k: int, direction_weight: float = 1.0) -> list[int]:
    """Pick ``k`` of N camera-to-world poses [N, 4, 4] that cover the scene; returns sorted indices.

    Farthest-point sampling in a 6-D space: each frame is (camera position, ``direction_weight`` x
    viewing direction) with the viewing direction the camera's +z axis in world coordinates (unit
    length), so with the default weight of 1 m, turning around on the spot counts like walking 2 m.
    The first pick is the frame farthest from the mean of all frames, then each pick is the frame
    farthest from all picks so far. Ties go to the earliest frame, so the choice is deterministic.
    The result is returned in time order (the order of the input) because the model sees views as a
    sequence. Fewer than ``k`` frames: all of them.

    The caller drops invalid poses (-inf/NaN) first.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    n = len(c2w)
    if n <= k:
        return list(range(n))
    feats = np.concatenate([c2w[:, :3, 3], direction_weight * c2w[:, :3, 2]], axis=1)  # [N, 6]
    first = int(np.argmax(np.linalg.norm(feats - feats.mean(0), axis=1)))
    chosen = [first]
    dist = np.linalg.norm(feats - feats[first], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[nxt], axis=1))
    return sorted(chosen)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def output_size(w: int, h: int, image_size: int) -> tuple[int, int]:
    """Written (w, h): width ``image_size`` (never upsampled), height keeping the aspect ratio."""
    new_w = min(int(image_size), int(w))
    return new_w, max(1, round(h * new_w / w))


def write_view(src: Path, dst: Path, K: np.ndarray, image_size: int,
               quality: int = 90) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Resize the colour image ``src`` to width ``image_size`` and save it as JPEG ``dst``.

    Returns (K of the written image [3, 3], original (w, h), written (w, h)). JPEG sources are
    decoded at a reduced DCT scale first (``Image.draft``), several times faster for 1296x968 frames;
    K is scaled from the original size to the written size either way.
    """
    from PIL import Image

    with Image.open(src) as im:
        orig_wh = im.size
        new_wh = output_size(*orig_wh, image_size)
        if im.format == "JPEG":
            im.draft("RGB", new_wh)
        im = im.convert("RGB")
        if im.size != new_wh:
            im = im.resize(new_wh, Image.BILINEAR, reducing_gap=2.0)
    write_atomic(dst, lambda tmp: im.save(tmp, format="JPEG", quality=quality))
    return G.resize_intrinsics(K, orig_wh, new_wh), orig_wh, new_wh


def depth_hist_from_png(path: Path | None, bins: int, max_depth: float = 10.0) -> np.ndarray | None:
    """depth_hist [bins] of a 16-bit millimetre depth PNG, or None when the file is missing."""
    from PIL import Image

    if path is None or not Path(path).is_file():
        return None
    with Image.open(path) as im:
        mm = np.asarray(im)
    return G.depth_histogram(G.depth_png_to_metres(mm), bins=bins, max_depth=max_depth)


# ----------------------------------------------------------------------------------------------
# Scene manifests
# ----------------------------------------------------------------------------------------------


def scene_params(num_views: int, image_size: int, depth_bins: int) -> dict:
    """The options a scene folder was written with; a manifest with other options is rebuilt."""
    return {"version": MANIFEST_VERSION, "num_views": int(num_views), "image_size": int(image_size),
            "depth_bins": int(depth_bins)}


def read_manifest(scene_dir: Path, params: dict) -> dict | None:
    """The manifest of a finished scene folder written with ``params``, else None."""
    path = Path(scene_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if manifest.get("params") != params:
        return None
    if not all((Path(scene_dir) / Path(p).name).is_file() for p in manifest.get("images", [])):
        return None
    return manifest


def views_manifest(scene_id: str, params: dict, images: list[str], R: list, t: list, K: list,
                   hists: list, frames: list[str], extra: dict | None = None) -> dict:
    """The per-scene manifest: relative image paths and the geom_token of the chosen views."""
    return {"scene_id": scene_id, "params": params, "images": images, "frames": frames,
            "geom_token": geom_token(R, t, K, hists), **(extra or {})}


def geom_token(R: list, t: list, K: list, hists: list) -> dict:
    """A record's ``geom_token`` from per-view R, t, K and depth histograms, rounded as every converter
    writes it (R, t to 1e-8, K to 1e-6, depth_hist to 1e-7)."""
    return {
        "R": [np.asarray(r, dtype=np.float64).round(8).tolist() for r in R],
        "t": [np.asarray(v, dtype=np.float64).round(8).tolist() for v in t],
        "K": [np.asarray(k, dtype=np.float64).round(6).tolist() for k in K],
        "depth_hist": [np.asarray(h, dtype=np.float64).round(7).tolist() for h in hists],
    }


# ----------------------------------------------------------------------------------------------
# The scene loop
# ----------------------------------------------------------------------------------------------


@dataclass
class SceneResult:
    """What converting one scene gave: the manifest, or the reason it failed."""

    scene_id: str
    manifest: dict | None = None
    reused: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _guarded(job: tuple[Callable[..., SceneResult], tuple]) -> SceneResult:
    fn, args = job
    start = time.perf_counter()
    try:
        result = fn(*args)
    except (DataError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        # A broken file in one scene must not stop thousands of others: report it and move on.
        msg = str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"
        result = SceneResult(scene_id=str(args[0]), error=msg.splitlines()[0] if msg else type(e).__name__)
    result.seconds = time.perf_counter() - start
    return result


def run_scenes(fn: Callable[..., SceneResult], jobs: list[tuple], workers: int,
               desc: str) -> dict[str, SceneResult]:
    """Run ``fn(*args)`` for each job (first arg = scene id) over ``workers`` processes with a tqdm bar.

    ``workers <= 1`` runs in this process (easier to debug, and what the tests use).
    """
    from tqdm.auto import tqdm

    results: dict[str, SceneResult] = {}
    bar = tqdm(total=len(jobs), desc=desc, unit="scene", disable=None, file=sys.stderr)
    work = [(fn, args) for args in jobs]
    if workers <= 1 or len(jobs) <= 1:
        for job in work:
            r = _guarded(job)
            results[r.scene_id] = r
            bar.update(1)
    else:
        with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
            for r in pool.imap_unordered(_guarded, work, chunksize=1):
                results[r.scene_id] = r
                bar.update(1)
    bar.close()
    return results


@dataclass
class Summary:
    """Counts for the end-of-run report (printed and written as OUT/prep_summary.json)."""

    command: str
    out: str
    scenes_requested: int = 0
    scenes_converted: int = 0
    scenes_reused: int = 0
    scenes_failed: dict[str, str] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    """One line per skipped input that names it (the report prints the first :data:`MAX_PROBLEMS`)."""

    def add_results(self, results: dict[str, SceneResult]) -> None:
        for sid, r in sorted(results.items()):
            if r.error is not None:
                self.scenes_failed[sid] = r.error
            elif r.reused:
                self.scenes_reused += 1
            else:
                self.scenes_converted += 1
            for w in r.warnings:
                self.warnings[w] += 1

    def to_dict(self) -> dict:
        converted_s = self.seconds
        return {
            "command": self.command,
            "out": self.out,
            "scenes": {"requested": self.scenes_requested, "converted": self.scenes_converted,
                       "reused": self.scenes_reused, "failed": len(self.scenes_failed)},
            "failed_scenes": self.scenes_failed,
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "warnings": dict(sorted(self.warnings.items())),
            **({"problems": self.problems} if self.problems else {}),
            **self.extra,
            "seconds": round(self.seconds, 3),
            "scenes_per_s": (round(self.scenes_converted / converted_s, 3)
                             if converted_s > 0 and self.scenes_converted else None),
        }

    def report(self, out_dir: Path) -> str:
        """Write OUT/prep_summary.json and return a short human-readable text."""
        d = self.to_dict()
        write_json_atomic(Path(out_dir) / "prep_summary.json", d)
        s = d["scenes"]
        lines = [f"{self.command}: {s['requested']} scenes: {s['converted']} converted, "
                 f"{s['reused']} already done, {s['failed']} failed ({d['seconds']} s)"]
        lines.append("records: " + (", ".join(f"{k} {v}" for k, v in self.records.items()) or "none"))
        for sid, why in list(self.scenes_failed.items())[:10]:
            lines.append(f"  failed {sid}: {why}")
        if len(self.scenes_failed) > 10:
            lines.append(f"  ... and {len(self.scenes_failed) - 10} more (see prep_summary.json)")
        for why, n in sorted(self.skipped.items()):
            lines.append(f"  skipped {n}: {why}")
        for why, n in sorted(self.warnings.items()):
            lines.append(f"  warning x{n}: {why}")
        for why in self.problems[:MAX_PROBLEMS]:
            lines.append(f"  skipped: {why}")
        if len(self.problems) > MAX_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - MAX_PROBLEMS} more skipped (see prep_summary.json)")
        for key, value in self.extra.items():
            if value:
                lines.append(f"  {key}: {value}")
        lines.append(f"summary: {Path(out_dir) / 'prep_summary.json'}")
        return "\n".join(lines)


def parse_splits(text: str, allowed: Iterable[str], flag: str = "--splits") -> list[str]:
    """'train,val' -> ['train', 'val'], refusing names not in ``allowed``."""
    allowed = list(allowed)
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in allowed]
    if not splits or bad:
        raise DataError(f"{flag}: unknown split {bad[0] if bad else text!r}; choose from {','.join(allowed)}")
    return splits


def annotation_files(path: Path, splits: list[str], file_name: str, known_splits: Iterable[str]) -> dict[str, Path]:
    """split -> an official annotation JSON: ``path`` is a folder holding ``file_name.format(split=...)`` for
    each of ``splits``, or one file (its split read from the end of its name, the longest known split first,
    else ``train``)."""
    if path.is_dir():
        files = {s: path / file_name.format(split=s) for s in splits}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise DataError(f"--annotations {path}: missing {', '.join(missing)}")
        return files
    if not path.is_file():
        raise DataError(f"--annotations {path}: no such file or folder")
    split = next((s for s in sorted(known_splits, key=len, reverse=True) if path.stem.endswith(s)), "train")
    return {split: path}
