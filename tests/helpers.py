"""Plain helpers behind the shared fixtures (importable by test modules; conftest.py is not,
since several folders have one): the repository root, tiny record corpora on disk, tiny configs, random
Stage 2 rooms."""

from __future__ import annotations

import inspect
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from vqkit.cameras import depth_histogram, intrinsics_from_fov, look_at, metres_to_depth_png

if TYPE_CHECKING:
    from vqkit.roomplan import Room

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
"""The repository root: where the README's commands run (configs/, data/, notebooks/)."""

# A Qwen3 small enough for several CPU steps per second, built from its config (no download).
TINY_QWEN3 = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}

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


def logged_losses(run_dir: Path) -> dict[int, float]:
    """Per-step loss from RUN/metrics.jsonl; a step logged twice (before a kill and after resume) keeps the last."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            out[record["step"]] = record["loss"]
    return out


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
    the original record format (``geom_token: null``, no depths). Returns the :class:`Corpus`."""
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
        if i == n - 1:  # the original record format: no geometry, no depths, extra keys absent
            rec = {"images": images, "geom_token": None, "question": rec["question"],
                   "answer": rec["answer"], "task": "scanqa"}
        records.append(rec)
    return Corpus(root, write_jsonl(root / name, records), records)


def tiny_config(root: Path, tokenizer_dir: Path, **data):
    """A tiny model over ``root/records.jsonl`` and ``root/val.jsonl`` (3 views of 56x42 -> 28 px):
    a 2-layer conv-embed aggregator, a 1-layer Perceiver, a 1-layer Qwen3 trained in full."""
    from vqkit.config import config_from_dict

    return config_from_dict({
        "model": {
            "encoder": {"img_size": 28, "embed_dim": 16, "depth": 2, "num_heads": 2, "patch_embed": "conv",
                        "layers": [-2, -1], "seed": 3},
            "projector": {"num_latents": 4, "num_layers": 1, "num_heads": 2},
            "geometry": {"hidden": 16},
            "llm": {"name_or_path": str(tokenizer_dir), "from_config": True, "config_overrides": dict(TINY_QWEN3)},
            "lora": {"enabled": False, "full_finetune": True},
        },
        "data": {"train": [{"path": str(root / "records.jsonl")}], "val": [{"path": str(root / "val.jsonl")}],
                 "num_views": 2, "image_size": 28, "max_length": 64,
                 "prompt_template": "{question}\n<image>\n{answer}", **data},
        "train": {"batch_size_per_gpu": 4, "max_steps": 1},
    })


def tiny_train_config(synth_dir: Path, run_dir: Path, **train) -> dict:
    """A tiny model with LoRA over a synthetic set (2 views of 56 px): a handful of CPU steps per second."""
    return {
        "model": {
            "encoder": {"img_size": 56, "embed_dim": 32, "depth": 1, "num_heads": 2, "patch_embed": "conv"},
            "projector": {"num_latents": 4, "num_layers": 1, "num_heads": 2},
            "geometry": {"hidden": 32},
            "llm": {"name_or_path": str(synth_dir / "tokenizer"), "from_config": True,
                    "config_overrides": {**TINY_QWEN3, "max_position_embeddings": 256}},
            "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1},
        },
        "data": {"train": [{"path": str(synth_dir / "train.jsonl")}], "val": [{"path": str(synth_dir / "val.jsonl")}],
                 "num_views": 2, "image_size": 56, "max_length": 128, "view_dropout": 0.3,
                 "prompt_template": "{question}\n<image>\n{answer}"},
        "train": {"output_dir": str(run_dir), "max_steps": 6, "batch_size_per_gpu": 4, "grad_accum": 2,
                  "lr": 1e-3, "proj_lr": 1e-3, "warmup_steps": 2, "log_every_steps": 1, "save_every_steps": 3,
                  "seed": 7, **train},
    }


# The demo's aggregator at test size (synth_dir's 56 px views) with demo-size heads: a few CPU steps per second.
TINY_PRETRAIN_ENCODER = {"img_size": 56, "embed_dim": 32, "depth": 1, "num_heads": 2, "patch_embed": "conv", "seed": 0}


def tiny_pretrain_config(synth_dir: Path, run_dir: Path, **train) -> dict:
    """A tiny ``vqkit pretrain-encoder`` run over a synthetic set (2 views of 56 px)."""
    return {
        "model": {"encoder": dict(TINY_PRETRAIN_ENCODER)},
        "encoder_pretrain": {"dpt_features": 8, "dpt_out_channels": [4, 8, 16, 16], "camera_trunk_depth": 1,
                             "camera_num_heads": 2},
        "data": {"train": [{"path": str(synth_dir / "train.jsonl")}], "val": [{"path": str(synth_dir / "val.jsonl")}],
                 "num_views": 2, "image_size": 56},
        "train": {"output_dir": str(run_dir), "max_steps": 6, "batch_size_per_gpu": 4, "grad_accum": 2,
                  "lr": 1e-3, "proj_lr": 1e-3, "warmup_steps": 2, "log_every_steps": 1, "save_every_steps": 3,
                  "seed": 7, **train},
    }


def random_room(seed: int, n_objects: int = 8, n_openings: int = 2) -> Room:
    """A rectangular room (4 walls, arbitrary centre and rotation), openings on walls, objects inside."""
    from vqkit.roomplan import CATEGORIES, Opening, Room, RoomObject, Wall

    rng = random.Random(seed)
    W, D, H = rng.uniform(3, 6), rng.uniform(3, 5), rng.uniform(2.4, 3.0)
    cx, cy = rng.uniform(-2, 2), rng.uniform(-2, 2)
    rot = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(rot), math.sin(rot)

    def world(u: float, v: float) -> tuple[float, float]:
        return cx + c * u - s * v, cy + s * u + c * v

    walls = []
    # (local centre, length, direction angle in the room frame); directions go round the room.
    sides = [(0, -D / 2, W, 0), (W / 2, 0, D, 90), (0, D / 2, W, 180), (-W / 2, 0, D, 270)]
    for i, (u, v, length, ang) in enumerate(sides):
        x, y = world(u, v)
        walls.append(Wall(f"w{i}", (x, y, H / 2), length, H, rot + math.radians(ang)))
    doors, windows = [], []
    for k in range(n_openings):
        wall = walls[rng.randrange(4)]
        along = rng.uniform(-0.3, 0.3) * wall.width
        x = wall.center[0] + along * math.cos(wall.yaw)
        y = wall.center[1] + along * math.sin(wall.yaw)
        if k % 2 == 0:
            doors.append(Opening(f"d{k}", "door", wall.id, (x, y, 1.05), 0.9, 2.1, wall.yaw, rng.random() < 0.5))
        else:
            windows.append(Opening(f"n{k}", "window", wall.id, (x, y, 1.5), 1.2, 1.0, wall.yaw))
    objects = []
    for k in range(n_objects):
        w, h, d = rng.uniform(0.4, 2.0), rng.uniform(0.4, 2.0), rng.uniform(0.4, 1.5)
        x, y = world(rng.uniform(-W / 3, W / 3), rng.uniform(-D / 3, D / 3))
        category = rng.choice(CATEGORIES)  # before the yaw: the order of the draws fixes each seed's room
        objects.append(RoomObject(f"o{k}", category, (x, y, h / 2), (w, h, d), rng.uniform(-math.pi, math.pi)))
    return Room(walls=walls, doors=doors, windows=windows, objects=objects)


def yaw_diff(a: float, b: float, period: float = math.pi) -> float:
    """The smaller angle between two yaws, modulo ``period`` (pi: a box turned half round is the same box)."""
    d = (a - b) % period
    return min(d, period - d)


def official_aggregator(cls, keep_layers=None, **kwargs):
    """The official ``Aggregator`` class ``cls`` built with ``kwargs``. Upstream since commit 9e4fa66
    (May 2026) returns only the layers in its ``cached_layer_indices`` (None for the others); where the
    class takes that argument, it keeps ``keep_layers`` (default: every layer), so a test can compare
    each layer with either upstream version."""
    if "cached_layer_indices" in inspect.signature(cls.__init__).parameters:
        kwargs["cached_layer_indices"] = tuple(range(kwargs["depth"]) if keep_layers is None else keep_layers)
    return cls(**kwargs)
