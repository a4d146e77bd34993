"""vqkit ask: a question about any photos, answered through the same pipeline as eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vqkit.cli import main as vqkit_main
from vqkit.errors import ConfigError, DataError
from vqkit.eval.ask import ask, build_batch
from vqkit.eval.run import evaluate
from vqkit.models.vlm import load_model


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def _record(eval_records, i):
    rec = json.loads(eval_records.read_text().splitlines()[i])
    return rec, [str(eval_records.parent / p) for p in rec["images"]]


def test_ask_answers_like_eval(model, eval_records):
    # Record 1 has no geometry, so asking about its photos must give eval's prediction exactly.
    rec, images = _record(eval_records, 1)
    rows, _ = evaluate(model, model.config, eval_records, limit=2, language=False, progress=False)
    answer = ask(model, images, rec["question"], situation=rec["situation"])
    assert answer == rows[1]["prediction"]


def test_cli_ask_prints_the_answer(tiny_model_dir, model, eval_records, capsys):
    rec, images = _record(eval_records, 3)
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--images", *images,
                       "--question", rec["question"]]) == 0
    assert capsys.readouterr().out == ask(model, images, rec["question"]) + "\n"


def test_any_photos_any_size_and_count(model, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(120, 90), (64, 100), (80, 80)]):
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    batch = build_batch(model, paths, "What is this?")
    # three photos, data.num_views = 2: two chosen evenly; no geometry
    assert batch["view_mask"].tolist() == [[True, True]]
    assert batch["geom_mask"].tolist() == [False]
    n_pad = int((batch["input_ids"] == model.image_pad_id).sum())
    assert n_pad == model.config.model.projector.num_latents
    assert batch["images"].shape[-1] == model.config.data.image_size
    assert isinstance(ask(model, paths, "What is this?", max_new_tokens=2), str)
    blind = build_batch(model, paths, "What is this?", blind=True)
    assert int((blind["input_ids"] == model.image_pad_id).sum()) == 0


def test_bad_input_is_one_line(tiny_model_dir, model, tmp_path, capsys):
    with pytest.raises(DataError, match="missing.jpg: image not found"):
        build_batch(model, [str(tmp_path / "missing.jpg")], "What?")
    with pytest.raises(ConfigError, match="question"):
        build_batch(model, [str(tmp_path / "missing.jpg")], "  ")
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--images", str(tmp_path / "missing.jpg"),
                       "--question", "What?"]) == 2
    err = capsys.readouterr().err.strip()
    assert "image not found" in err and len(err.splitlines()) == 1
    assert vqkit_main(["ask", "--model", str(tmp_path / "nope"), "--images", "a.jpg", "--question", "q"]) == 2
