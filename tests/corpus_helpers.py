"""Plain helpers behind the shared fixtures (importable by test modules; conftest.py is not,
since several folders have one)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vqkit.data.geometry import depth_histogram, intrinsics_from_fov, look_at, metres_to_depth_png

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_WORDS = ["red", "green", "blue", "chair", "table", "bed", "sofa", "yes", "no", "two", "three", "lamp"]
TINY_QUESTIONS = ["What colour is the chair?", "How many tables are in the room?", "Is there a bed?",
                  "What is next to the sofa?"]
TINY_ANSWERS = ["red", "two", "yes", "lamp"]


@dataclass
class Corpus:
    """A record file on disk: ``root`` (the data folder), ``path`` (the JSONL) and the raw dicts."""

    root: Path
    path: Path
    records: list[dict]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_view(path: Path, width: int, height: int, seed: int) -> None:
    """A smooth random-colour image (PNG or JPEG by suffix)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 255, 3)
    img = (base + 60 * np.sin(x[..., None] / (3 + seed % 5)) + 40 * np.cos(y[..., None] / 4)) % 256
    Image.fromarray(img.astype(np.uint8)).save(path)


def make_corpus(root: Path, n: int = 4, views: int = 3, size: tuple[int, int] = (56, 42),
                depth_bins: int = 16, name: str = "records.jsonl", seed: int = 0) -> Corpus:
    """Write ``n`` records of ``views`` views (W x H = ``size``) under ``root``; the last record is in
    the seed's format (``geom_token: null``, no depths). Returns the :class:`Corpus`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    w, h = size
    K = intrinsics_from_fov(w, h, 60.0)
    records = []
    for i in range(n):
        images, depths, Rs, ts, hists = [], [], [], [], []
        for v in range(views):
            name_v = f"img/r{seed}_{i}_{v}"
            make_view(root / f"{name_v}.png", w, h, seed=1000 * seed + 10 * i + v)
            depth_m = np.full((h, w), 1.0 + 0.5 * v + 0.25 * i)
            depth_m[:, : w // 4] = 0.0  # invalid strip
            Image.fromarray(metres_to_depth_png(depth_m)).save(root / f"{name_v}_depth.png")
            angle = 2 * np.pi * v / views
            R, t = look_at([2 * np.cos(angle), 2 * np.sin(angle), 1.5], [0, 0, 1.0])
            images.append(f"{name_v}.png")
            depths.append(f"{name_v}_depth.png")
            Rs.append(R.tolist())
            ts.append(t.tolist())
            hists.append(depth_histogram(depth_m, depth_bins).tolist())
        rec = {"id": f"s{seed}-q{i}", "scene_id": f"scene{i:04d}", "task": "synth", "images": images,
               "question": TINY_QUESTIONS[i % len(TINY_QUESTIONS)], "answer": TINY_ANSWERS[i % len(TINY_ANSWERS)],
               "geom_token": {"R": Rs, "t": ts, "K": [K.tolist()] * views, "depth_hist": hists},
               "depths": depths}
        if i == n - 1:  # the seed's record format: no geometry, no depths, extra keys absent
            rec = {"images": images, "geom_token": None, "question": rec["question"],
                   "answer": rec["answer"], "task": "scanqa"}
        records.append(rec)
    return Corpus(root, write_jsonl(root / name, records), records)
