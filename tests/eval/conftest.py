"""Fixtures for the eval tests: a saved tiny model folder and a small mixed-task record file.

- ``eval_records``: 5 records (an odd number, so 2 ranks get unequal shares) of 2 small PNG views:
  ScanQA-style (several answers, a qtype), SQA3D-style (situation, no qtype: first-word types), one
  with geometry, one in the original record format.
- ``tiny_model_dir``: a random-init tiny VQModel (conv aggregator, 1-layer Perceiver, 1-layer Qwen3,
  BPE tokenizer trained on the records' text) saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqkit.cameras import intrinsics_from_fov, look_at

SIZE = 56
RECORDS = [
    {"id": "scanqa-0", "task": "scanqa", "qtype": "color", "question": "What color is the chair?",
     "answer": "brown", "answers": ["brown", "dark brown"], "scene_id": "scene0000_00"},
    {"id": "sqa3d-0", "task": "sqa3d", "situation": "I am sitting on the bed.",
     "question": "What is in front of me?", "answer": "table"},
    {"id": "sqa3d-1", "task": "sqa3d", "situation": "I am facing the window.",
     "question": "Is the door open?", "answer": "no"},
    {"id": "scanqa-1", "task": "scanqa", "qtype": "number", "question": "How many chairs are there?",
     "answer": "2", "answers": ["2", "two"], "scene_id": "scene0001_00"},
    {"task": "sqa3d", "situation": "I just came in.", "question": "Can I sit on the sofa?", "answer": "yes",
     "geom_token": None},  # the original record format, no id
]
WORDS = ["brown", "dark", "table", "no", "yes", "two", "2", "chair", "sofa", "bed", "red", "door", "window"]


def _view(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (SIZE * 3 // 4, SIZE, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)


def write_records(root: Path, records=RECORDS, views: int = 2) -> Path:
    """Write the records (with generated PNG views) to ``root/records.jsonl``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    K = intrinsics_from_fov(SIZE, SIZE * 3 // 4, 60.0)
    lines = []
    for i, rec in enumerate(records):
        rec = dict(rec)
        rec["images"] = []
        for v in range(views):
            name = f"img/{i}_{v}.png"
            _view(root / name, 10 * i + v)
            rec["images"].append(name)
        if i == 0:  # one record with camera geometry
            Rs, ts = zip(*[look_at([2.0 * np.cos(a), 2.0 * np.sin(a), 1.5], [0.0, 0.0, 1.0])
                           for a in np.linspace(0, np.pi, views)], strict=True)
            rec["geom_token"] = {"R": [r.tolist() for r in Rs], "t": [t.tolist() for t in ts],
                                 "K": [K.tolist()] * views, "depth_hist": [[1.0] + [0.0] * 15] * views}
        lines.append(json.dumps(rec))
    path = root / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def eval_records(tmp_path_factory) -> Path:
    return write_records(tmp_path_factory.mktemp("eval_data"))


def tiny_config_dict(tokenizer_dir: Path) -> dict:
    return {
        "model": {
            "encoder": {"img_size": SIZE, "embed_dim": 32, "depth": 1, "num_heads": 2, "patch_embed": "conv"},
            "projector": {"num_latents": 4, "num_layers": 1, "num_heads": 2},
            "geometry": {"hidden": 32},
            "llm": {"name_or_path": str(tokenizer_dir), "from_config": True,
                    "config_overrides": {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64,
                                         "num_hidden_layers": 1, "num_attention_heads": 2,
                                         "num_key_value_heads": 1, "head_dim": 16,
                                         "max_position_embeddings": 256}},
            "lora": {"enabled": False, "full_finetune": True},
        },
        "data": {"num_views": 2, "image_size": SIZE, "max_length": 128,
                 "prompt_template": "{question}\n<image>\n{answer}"},
        "train": {"seed": 3},
        "eval": {"batch_size": 2, "max_new_tokens": 4},
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from vqkit.config import config_from_dict
    from vqkit.models.builder import build_model
    from vqkit.tokenizer import load_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("tiny_model")
    texts = [r["question"] for r in RECORDS] + [r.get("situation", "") for r in RECORDS] + WORDS
    train_tokenizer([t for t in texts if t] * 3, root / "tokenizer", vocab_size=300)
    cfg = config_from_dict(tiny_config_dict(root / "tokenizer"))
    model = build_model(cfg, load_tokenizer(cfg.model.llm))
    return model.save_pretrained(root / "final")
