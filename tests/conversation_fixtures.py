"""Conversation files in the layouts the field releases (LLaVA / Qwen-VL-finetune), over tiny media the tests
make: photos, a ScanNet posed_images scan in the official layout, a video written with PyAV, a folder of
frames. Used by tests/data/test_conversations.py, tests/prep/test_conversations.py and the eval tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import prep_fixtures as F
from helpers import make_view


def write_json(path: Path, samples: list[dict], jsonl: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if jsonl:
        path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    else:
        path.write_text(json.dumps(samples, indent=1))
    return path


def photos(root: Path, n: int, size=(56, 42), prefix: str = "coco/img") -> list[str]:
    """``n`` photos under ``root``; their paths relative to it."""
    (root / Path(prefix).parent).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{prefix}{i:03d}.jpg"
        make_view(root / name, *size, seed=50 + i)
        names.append(name)
    return names


def posed_scan(root: Path, scene_id: str = "scene0000_00", frames: int = 32, seed: int = 3,
               color_wh=(64, 48), depth_wh=(32, 24)) -> dict:
    """A ScanNet posed_images scan (``root/posed_images/<scene>/00000.jpg|png|txt, intrinsic.txt``) of a
    synthetic room: ``{"folder", "frames" (paths relative to root), "scene", "K_color"}``."""
    scene = F.make_scene(seed=seed, n_frames=frames, with_boxes=False)
    info = F.export_scannet(scene, root, scene_id, layout="posed", color_wh=color_wh, depth_wh=depth_wh)
    frames_rel = [f"posed_images/{scene_id}/{i:05d}.jpg" for i in range(frames)]
    return {**info, "frames": frames_rel, "scene": scene}


def video_frames(n: int = 12, size=(64, 48)) -> list[np.ndarray]:
    """``n`` distinct RGB frames (a bar moving across a gradient)."""
    w, h = size
    out = []
    for i in range(n):
        frame = np.zeros((h, w, 3), dtype=np.uint8)
        frame[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        frame[..., 1] = 20 * i % 256
        frame[:, (i * w // n):(i * w // n) + 4, 2] = 255
        out.append(frame)
    return out


def write_video_file(path: Path, n: int = 12) -> Path:
    from vqkit.data.video import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(write_video(str(path), video_frames(n)))


def write_frame_folder(folder: Path, n: int = 10) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(video_frames(n)):
        Image.fromarray(frame).save(folder / f"frame_{i + 1}.jpg")
    return folder


def human(text: str) -> dict:
    return {"from": "human", "value": text}


def gpt(text: str) -> dict:
    return {"from": "gpt", "value": text}
