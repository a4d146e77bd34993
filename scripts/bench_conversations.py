"""Loading 32-frame ScanNet posed_images samples from a conversation file vs the same samples as vqkit records.

Writes its own data first into a temporary folder: ``--scans`` scans of ``--frames`` frames in ScanNet's
posed_images layout (photo-like 640x480 JPEGs, 16-bit millimetre depth PNGs, camera-to-world pose .txt,
``intrinsic.txt``), a conversation file of ``--samples`` samples (one ``<image>`` per frame), and the
records ``vqkit prep conversations`` writes from it. Then, for each, it times building the dataset (reading
the file: for the conversation file that includes the poses and the depth maps' histograms) and the
DataLoader's samples per wall second and per CPU second over whole epochs (decode, resize, K update,
prompt + labels, padding), the two alternating so drift hits both alike (medians over ``--repeats``):

    .venv/bin/python scripts/bench_conversations.py --frames 32 --views 32 --image-size 448 --repeats 6

The first batch of every epoch is not timed (page cache). Run it under the CPU lock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqkit import cameras as G
from vqkit.config import config_from_dict
from vqkit.data.dataset import build_dataloader, build_dataset, set_epoch
from vqkit.prep.conversations import to_records
from vqkit.tokenizer import train_tokenizer

SCANNET_K = np.array([[577.87, 0.0, 319.5], [0.0, 577.87, 239.5], [0.0, 0.0, 1.0]])  # ScanNet's 640x480 colour K


def photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth, textured image (JPEG-compresses like a photo rather than like noise)."""
    small = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    arr += rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_scan(folder: Path, frames: int, rng: np.random.Generator) -> list[str]:
    """A posed_images scan: frames walking around a room, looking at its middle."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "intrinsic.txt").write_text("\n".join(" ".join(f"{v:.6f}" for v in row)
                                                    for row in G.pose_matrix(SCANNET_K, np.zeros(3))) + "\n")
    names = []
    for i in range(frames):
        angle = 2 * np.pi * i / frames
        R, t = G.look_at([2.5 * np.cos(angle), 2.0 * np.sin(angle), 1.5], [0.0, 0.0, 1.0])
        Rc, tc = G.invert_pose(R, t)
        (folder / f"{i:05d}.txt").write_text("\n".join(" ".join(f"{v:.9g}" for v in row)
                                                       for row in G.pose_matrix(Rc, tc)) + "\n")
        photo(rng, 640, 480).save(folder / f"{i:05d}.jpg", quality=90)
        depth = 1.0 + 3.0 * rng.random((480, 640))
        Image.fromarray(G.metres_to_depth_png(depth)).save(folder / f"{i:05d}.png")
        names.append(f"{i:05d}.jpg")
    return names


def write_data(root: Path, scans: int, frames: int, samples: int, seed: int = 0) -> tuple[Path, Path]:
    """(the conversation file, the same samples as records) under ``root``."""
    rng = np.random.default_rng(seed)
    scan_frames = []
    for s in range(scans):
        scene = f"scene{s:04d}_00"
        names = write_scan(root / "posed_images" / scene, frames, rng)
        scan_frames.append([f"posed_images/{scene}/{n}" for n in names])
    questions = ["What is on the table?", "How many chairs are there?", "What colour is the sofa?",
                 "Is there a lamp next to the bed?"]
    conv = [{"id": f"q{i}", "scene_id": f"scene{i % scans:04d}_00", "images": scan_frames[i % scans],
             "conversations": [{"from": "human", "value": "<image>" * frames + "\n" + questions[i % 4]},
                               {"from": "gpt", "value": ["a cup", "two", "red", "yes"][i % 4]}]}
            for i in range(samples)]
    conv_path = root / "conversations.json"
    conv_path.write_text(json.dumps(conv))
    records_path = root / "records.jsonl"
    to_records(conv_path, records_path, overwrite=True)
    return conv_path, records_path


def config(path: Path, tokenizer_dir: Path, views: int, image_size: int, batch: int):
    return config_from_dict({
        "model": {"llm": {"name_or_path": str(tokenizer_dir)}, "projector": {"num_latents": 16}},
        "data": {"train": [{"path": str(path)}], "num_views": views, "image_size": image_size,
                 "max_length": 512, "prompt_template": "{question}\n<image>\n{answer}"},
        "train": {"batch_size_per_gpu": batch, "seed": 0}})


def time_epoch(cfg, dataset, tokenizer, batch: int, epoch: int) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second of this process) of one epoch through the
    DataLoader (in this process: data.num_workers 0), the first batch not timed. CPU time is what other
    jobs on the machine disturb least."""
    loader = build_dataloader(cfg, "train", tokenizer, batch_size=batch, shuffle=True, dataset=dataset, epoch=epoch)
    set_epoch(loader, epoch)
    it = iter(loader)
    next(it)
    wall, cpu, n = time.perf_counter(), time.process_time(), 0
    for b in it:
        n += b["input_ids"].shape[0]
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scans", type=int, default=4)
    p.add_argument("--frames", type=int, default=32, help="frames per scan and per sample")
    p.add_argument("--samples", type=int, default=66, help="samples (questions) in each file")
    p.add_argument("--views", type=int, default=32, help="data.num_views: frames each sample loads")
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=6, help="epochs timed per source, alternating")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    from vqkit.tokenizer import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conv_path, records_path = write_data(root, args.scans, args.frames, args.samples)
        tok_dir = root / "tok"
        train_tokenizer(["What is on the table? How many chairs are there? a cup two red yes"] * 4, tok_dir,
                        vocab_size=300)
        out: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
        runs = {}
        for name, path in (("conversations", conv_path), ("records", records_path)):
            cfg = config(path, tok_dir, args.views, args.image_size, args.batch)
            start = time.perf_counter()
            dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=0)
            out[f"{name}_build_s"] = round(time.perf_counter() - start, 3)
            runs[name] = (cfg, dataset, load_tokenizer(cfg.model.llm), [])
        first = runs["conversations"][1].record(0)
        same = runs["records"][1].record(0)
        assert np.array_equal(first.geometry.R, same.geometry.R) and first.images == same.images
        for epoch in range(args.repeats):
            for name in ("conversations", "records") if epoch % 2 == 0 else ("records", "conversations"):
                cfg, dataset, tok, rates = runs[name]
                rates.append(time_epoch(cfg, dataset, tok, args.batch, epoch))
        for name, (_, _, _, rates) in runs.items():
            out[f"{name}_samples_per_s"] = round(statistics.median(r[0] for r in rates), 3)
            out[f"{name}_samples_per_cpu_s"] = round(statistics.median(r[1] for r in rates), 3)
            out[f"{name}_epochs"] = [[round(w, 3), round(c, 3)] for w, c in rates]
        for unit in ("samples_per_s", "samples_per_cpu_s"):
            out[f"conversations_vs_records_{unit}"] = round(out[f"conversations_{unit}"] / out[f"records_{unit}"], 4)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
