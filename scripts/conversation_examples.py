"""Conversation files in the field's layouts, made from the synthetic rooms: one of each kind vqkit reads.

    .venv/bin/python scripts/conversation_examples.py data/conversations --synth data/synth

writes into OUT (with ``OUT/synth`` a link to ``--synth``, so every path is relative to OUT):

- ``single_image.json``: Qwen-VL-finetune samples of one photo each (``image``, ``<image>`` first), the
  questions of the synthetic val rooms, each about one of its views; no poses.
- ``llava_2d_train.json``: the same over the training rooms (2D instruction data to mix with rooms).
- ``posed_32.json``: rooms rendered with 32 views (``vqkit synth --views 32``) written as ScanNet
  posed_images scans (``OUT/scannet/posed_images/<scene>/00000.jpg``, ``.png`` depth in millimetres, ``.txt``
  camera-to-world, ``intrinsic.txt``), each question with its 32 frames and 32 ``<image>`` placeholders.
- ``multi_turn.jsonl``: every val room as one ``messages`` conversation, its questions as the turns.
- ``video.json``: each 32-view room as an H.264 video written with PyAV (``OUT/videos/<scene>.mp4``), its
  questions as ``<video>`` samples.

It prints the ``vqkit eval`` and ``vqkit train`` commands that read them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vqkit import cameras as G
from vqkit.data.video import write_video
from vqkit.synth.benchmark import generate


def _matrix(M) -> str:
    return "\n".join(" ".join(f"{v:.9g}" for v in row) for row in np.asarray(M)) + "\n"


def _human(text: str) -> dict:
    return {"from": "human", "value": text}


def _gpt(text: str) -> dict:
    return {"from": "gpt", "value": text}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def single_image(records: list[dict], prefix: str) -> list[dict]:
    """One photo per question: view (question number mod views) of its room."""
    return [{"id": r["id"], "scene_id": r["scene_id"], "question_type": r["qtype"], "answers": r["answers"],
             "image": f"{prefix}/{r['images'][k % len(r['images'])]}",
             "conversations": [_human(f"<image>\n{r['question']}"), _gpt(r["answer"])]}
            for k, r in enumerate(records)]


def multi_turn(records: list[dict], prefix: str) -> list[dict]:
    """Each room's questions as the turns of one conversation (``messages``)."""
    rooms: dict[str, list[dict]] = {}
    for r in records:
        rooms.setdefault(r["scene_id"], []).append(r)
    out = []
    for scene, questions in rooms.items():
        images = [f"{prefix}/{p}" for p in questions[0]["images"]]
        messages = []
        for k, r in enumerate(questions):
            views = "<image>" * len(images) + "\n" if k == 0 else ""
            messages.append({"role": "user", "content": views + r["question"]})
            messages.append({"role": "assistant", "content": r["answer"]})
        out.append({"id": scene, "scene_id": scene, "images": images, "answers": [r["answers"] for r in questions],
                    "messages": messages})
    return out


def export_posed(rooms: Path, out: Path) -> dict[str, list[str]]:
    """Each 32-view room as a posed_images scan; its frames' paths relative to ``out``."""
    frames = {}
    for scene_dir in sorted((rooms / "scenes").iterdir()):
        cameras = json.loads((scene_dir / "cameras.json").read_text())
        folder = out / "scannet" / "posed_images" / scene_dir.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "intrinsic.txt").write_text(_matrix(G.pose_matrix(np.asarray(cameras[0]["K"]), np.zeros(3))))
        names = []
        for i, cam in enumerate(cameras):
            Image.open(rooms / cam["image"]).convert("RGB").save(folder / f"{i:05d}.jpg", quality=95)
            (folder / f"{i:05d}.png").write_bytes((rooms / cam["depth"]).read_bytes())
            (folder / f"{i:05d}.txt").write_text(_matrix(G.pose_matrix(*G.invert_pose(cam["R"], cam["t"]))))
            names.append(f"scannet/posed_images/{scene_dir.name}/{i:05d}.jpg")
        frames[scene_dir.name] = names
    return frames


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--synth", type=Path, default=Path("data/synth"), help="the synthetic rooms (vqkit synth)")
    p.add_argument("--rooms", type=int, default=12, help="rooms rendered with 32 views")
    p.add_argument("--limit", type=int, default=200, help="questions per file at most")
    args = p.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "synth").exists():
        os.symlink(args.synth.resolve(), out / "synth")
    val, train = _records(args.synth / "val.jsonl"), _records(args.synth / "train.jsonl")
    files = {"single_image.json": single_image(val[: args.limit], "synth"),
             "llava_2d_train.json": single_image(train, "synth"),
             "multi_turn.jsonl": multi_turn(val[: args.limit], "synth")}
    rooms = out / "rooms32"
    if not (rooms / "stats.json").is_file():
        generate(rooms, scenes=args.rooms, views=32, image_size=112, seed=32, render_scale=1, tokenizer=False,
                 split_fractions=(0.0, 1.0, 0.0), progress=False)
    frames = export_posed(rooms, out)
    room_questions = _records(rooms / "val.jsonl")
    files["posed_32.json"] = [
        {"id": r["id"], "scene_id": r["scene_id"], "question_type": r["qtype"], "answers": r["answers"],
         "images": frames[r["scene_id"]],
         "conversations": [_human("<image>" * 32 + "\n" + r["question"]), _gpt(r["answer"])]}
        for r in room_questions[: args.limit]]
    (out / "videos").mkdir(exist_ok=True)
    for scene in frames:
        video = out / "videos" / f"{scene}.mp4"
        if not video.is_file():
            views = [Image.open(rooms / "scenes" / scene / f"rgb_{i:02d}.png").convert("RGB") for i in range(32)]
            write_video(str(video), [np.asarray(v) for v in views])
    files["video.json"] = [{"id": r["id"], "scene_id": r["scene_id"], "question_type": r["qtype"],
                            "video": f"videos/{r['scene_id']}.mp4", "answers": r["answers"],
                            "conversations": [_human("<video>\n" + r["question"]), _gpt(r["answer"])]}
                           for r in room_questions[: args.limit]]
    for name, samples in files.items():
        path = out / name
        if name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        else:
            path.write_text(json.dumps(samples, indent=1) + "\n")
        print(f"{path}: {len(samples)} samples")
    print(f"evaluate: vqkit eval --model runs/demo/final --data {out}/posed_32.json --out runs/demo/eval_posed_32")
    print(f"train:    vqkit train --config configs/demo.yaml --set 'data.train=[{{path: {out}/multi_turn.jsonl}}]' "
          f"train.max_steps=20 train.output_dir=runs/conv_multi_turn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
