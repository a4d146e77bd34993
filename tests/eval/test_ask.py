"""vqkit ask: a question about any photos, answered through the same pipeline as eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqkit.commands import main as vqkit_main
from vqkit.errors import ConfigError, DataError
from vqkit.eval.ask import ask, ask_roomplan, build_batch
from vqkit.eval.generate import evaluate
from vqkit.models.builder import load_model


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


def _photos_with_cameras(rec, images, folder):
    """The record's photos copied into ``folder`` with a cameras.json (vqkit synth's format) made
    from its geom_token."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(shutil.copy(p, folder / f"view{i}{Path(p).suffix}")) for i, p in enumerate(images)]
    geo = rec["geom_token"]
    cams = [{"image": Path(p).name, **{k: geo[k][v] for k in ("R", "t", "K", "depth_hist")}}
            for v, p in enumerate(paths)]
    (folder / "cameras.json").write_text(json.dumps(cams))
    return paths


def test_cameras_next_to_the_photos_give_the_geometry_tokens(tiny_model_dir, model, eval_records, tmp_path, capsys):
    # Record 0 has geometry: its photos plus a cameras.json must give eval's prediction exactly.
    rec, images = _record(eval_records, 0)
    assert rec.get("geom_token")
    paths = _photos_with_cameras(rec, images, tmp_path / "scene")
    rows, _ = evaluate(model, model.config, eval_records, limit=1, language=False, progress=False)
    batch = build_batch(model, paths, rec["question"], situation=rec.get("situation"))
    assert batch["geom_mask"].tolist() == [True]
    assert ask(model, paths, rec["question"], situation=rec.get("situation")) == rows[0]["prediction"]
    assert build_batch(model, paths, rec["question"], cameras=False)["geom_mask"].tolist() == [False]
    # explicit --cameras, and --no-geometry, from the command line
    cameras = tmp_path / "scene" / "cameras.json"
    moved = tmp_path / "poses.json"
    cameras.rename(moved)
    assert build_batch(model, paths, rec["question"])["geom_mask"].tolist() == [False]  # nothing found
    args = ["ask", "--model", str(tiny_model_dir), "--images", *paths, "--question", rec["question"]]
    assert vqkit_main(args + ["--cameras", str(moved)]) == 0
    with_poses = capsys.readouterr().out
    assert with_poses == ask(model, paths, rec["question"], cameras=moved) + "\n"
    assert vqkit_main(args + ["--no-geometry"]) == 0
    assert capsys.readouterr().out == ask(model, paths, rec["question"], cameras=False) + "\n"


def test_bad_cameras_are_one_line(tiny_model_dir, model, eval_records, tmp_path, capsys):
    rec, images = _record(eval_records, 0)
    paths = _photos_with_cameras(rec, images, tmp_path / "scene")
    cameras = tmp_path / "scene" / "cameras.json"
    extra = tmp_path / "scene" / "other.png"
    Image.new("RGB", (32, 32)).save(extra)
    # a cameras.json that does not list every photo is not picked up on its own ...
    assert build_batch(model, paths + [str(extra)], "What?")["geom_mask"].tolist() == [False]
    # ... and named explicitly it is an error naming the file and the photo
    with pytest.raises(DataError, match="cameras.json: no camera for other.png"):
        build_batch(model, paths + [str(extra)], "What?", cameras=cameras)
    cams = json.loads(cameras.read_text())
    cams[0]["R"] = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    cameras.write_text(json.dumps(cams))
    with pytest.raises(DataError, match="field 'geom_token.R': view 0 is not a rotation"):
        build_batch(model, paths, "What?", cameras=cameras)
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--images", *paths, "--question", "What?",
                       "--cameras", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.json: cameras file not found" in err and len(err.splitlines()) == 1


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


# ------------------------------------------------------------------ --roomplan


@pytest.fixture(scope="module")
def roomplan_records(eval_records):
    """Two Stage 2 records (CapturedRoom gold, the Stage 2 prompt) on the eval fixture's photos, no
    geometry: what `vqkit ask --roomplan` sees for the same photos."""
    import math

    from vqkit.roomplan import ROOMPLAN_QUESTION
    from vqkit.roomplan import Opening, Room, RoomObject, Wall

    room = Room(walls=[Wall("w0", (0.0, 1.5, 1.25), 3.0, 2.5, math.pi / 2), Wall("w1", (1.5, 0.0, 1.25), 3.0, 2.5, 0.0)],
                doors=[Opening("d0", "door", "w1", (1.0, 0.0, 1.0), 0.9, 2.0, 0.0, True)],
                objects=[RoomObject("o0", "chair", (1.0, 1.0, 0.45), (0.5, 0.9, 0.5), 0.0)])
    lines = []
    for i in range(2):
        rec = json.loads(eval_records.read_text().splitlines()[i + 1])
        lines.append(json.dumps({"id": f"room-{i}", "task": "roomplan", "question": ROOMPLAN_QUESTION,
                                 "images": rec["images"], "roomplan": room.to_capturedroom()}))
    path = eval_records.parent / "roomplan.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _short_layouts(model):
    import copy

    cfg = copy.deepcopy(model.config)
    cfg.eval.roomplan_max_new_tokens = 24  # a random tiny model: keep its layouts short
    return cfg


def test_ask_roomplan_generates_like_eval(model, roomplan_records):
    from vqkit.roomplan import Room

    cfg = _short_layouts(model)
    rows, metrics = evaluate(model, cfg, roomplan_records, language=False, progress=False)
    assert metrics["roomplan"]["n"] == 2
    for i, row in enumerate(rows):
        images = [str(roomplan_records.parent / p) for p in json.loads(roomplan_records.read_text().splitlines()[i])["images"]]
        room, problems, text = ask_roomplan(model, images, cfg=cfg)
        assert text == row["prediction"]  # same prompt, budget and stopping rule as eval
        parsed, parse_problems = Room.from_text(text)
        assert room.to_text() == parsed.to_text()
        assert problems == (parse_problems if text else ["the model generated no text"])


def test_cli_ask_roomplan_writes_capturedroom_json(tiny_model_dir, model, roomplan_records, tmp_path, capsys):
    from vqkit.roomplan import Room

    images = [str(roomplan_records.parent / p) for p in json.loads(roomplan_records.read_text().splitlines()[0])["images"]]
    room, problems, _ = ask_roomplan(model, images, cfg=_short_layouts(model))
    args = ["ask", "--model", str(tiny_model_dir), "--images", *images, "--roomplan",
            "--set", "eval.roomplan_max_new_tokens=24"]
    out = tmp_path / "sub" / "room.json"
    assert vqkit_main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(room.to_capturedroom()))
    assert set(written) >= {"walls", "doors", "windows", "openings", "objects"}
    assert Room.from_capturedroom(written).to_text() == room.to_text()
    assert f"{len(room.walls)} walls" in captured.err and str(out) in captured.err
    for problem in problems:
        assert problem in captured.err
    # without --out the JSON goes to stdout (and only the JSON: the report is on stderr)
    assert vqkit_main(args) == 0
    assert json.loads(capsys.readouterr().out) == written


def test_ask_roomplan_bad_arguments_are_one_line(tiny_model_dir, eval_records, capsys):
    rec, images = _record(eval_records, 1)
    base = ["ask", "--model", str(tiny_model_dir), "--images", *images]
    for extra, message in ((["--out", "x.json", "--question", "q"], "--out"),
                           ([], "--question is required"),
                           (["--roomplan", "--situation", "I sit."], "--situation")):
        assert vqkit_main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
