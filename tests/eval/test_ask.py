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

    from vqkit.roomplan import ROOMPLAN_QUESTION, Opening, Room, RoomObject, Wall

    room = Room(walls=[Wall("w0", (0.0, 1.5, 1.25), 3.0, 2.5, math.pi / 2),
                       Wall("w1", (1.5, 0.0, 1.25), 3.0, 2.5, 0.0)],
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
        record = json.loads(roomplan_records.read_text().splitlines()[i])
        images = [str(roomplan_records.parent / p) for p in record["images"]]
        room, problems, text = ask_roomplan(model, images, cfg=cfg)
        assert text == row["prediction"]  # same prompt, budget and stopping rule as eval
        parsed, parse_problems = Room.from_text(text)
        assert room.to_text() == parsed.to_text()
        assert problems == (parse_problems if text else ["the model generated no text"])


def test_cli_ask_roomplan_writes_capturedroom_json(tiny_model_dir, model, roomplan_records, tmp_path, capsys):
    from vqkit.roomplan import Room

    record = json.loads(roomplan_records.read_text().splitlines()[0])
    images = [str(roomplan_records.parent / p) for p in record["images"]]
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
    assert f"layout: {room.counts()} written to {out}" in captured.err
    assert room.counts().startswith(f"{len(room.walls)} walls, {len(room.doors)} doors, ")
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


# ------------------------------------------------------------------ what is checked first, what is said


def _never_load(monkeypatch):
    """Make loading the model fail loudly: the checks below must happen before it."""
    import vqkit.models.builder as builder

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(builder, "load_model", refuse)


def test_bad_input_fails_before_the_model_loads_in_plain_words(tiny_model_dir, eval_records, tmp_path,
                                                               monkeypatch, capsys):
    """A truncated photo used to fail after ~6 s of model loading as "<command line>:0: record 'ask':
    ..."; now it fails first, naming the file."""
    _, images = _record(eval_records, 1)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(images[0]).read_bytes()[:200])
    _never_load(monkeypatch)
    base = ["ask", "--model", str(tiny_model_dir)]
    for args, expected in (
        ([*base, "--images", images[0], str(truncated), "--question", "What?"],
         f"vqkit ask: error: {truncated}: cannot decode the image ("),
        ([*base, "--images", images[0], "--question", "  "], "vqkit ask: error: --question must not be empty"),
        ([*base, "--images", str(tmp_path / "gone.png"), "--question", "What?"],
         f"vqkit ask: error: {tmp_path / 'gone.png'}: image not found"),
    ):
        assert vqkit_main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(expected) and len(err.splitlines()) == 1, err
        assert "<command line>" not in err


def test_photos_left_out_and_missing_geometry_are_said(tiny_model_dir, model, eval_records, tmp_path, capsys):
    """More photos than data.num_views, and no cameras: both used to be silent."""
    from vqkit.eval.ask import prepare_ask

    _, images = _record(eval_records, 1)
    paths = []
    for i in range(4):  # four photos for a model that takes two
        paths.append(str(tmp_path / f"p{i}.png"))
        Image.open(images[i % 2]).save(paths[-1])
    prepared = prepare_ask(model.config, paths, "What is this?")
    assert prepared.used == [paths[0], paths[3]]  # evenly spaced, as eval picks them
    assert prepared.notes[0] == ("using 2 of 4 photos (the model takes data.num_views = 2, chosen evenly): "
                                 "p0.png, p3.png; left out: p1.png, p2.png")
    assert prepared.notes[1].startswith("no camera geometry: no --cameras, no cameras.json and no posed_images "
                                        "pose files")
    assert prepare_ask(model.config, paths[:2], "What?", cameras=False).notes == []  # --no-geometry: intended
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--images", *paths, "--question", "What?",
                       "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    assert "vqkit ask: note: using 2 of 4 photos" in err and "vqkit ask: note: no camera geometry" in err
    # a cameras.json beside them that misses a photo is named, not silently ignored
    (tmp_path / "cameras.json").write_text(json.dumps([{"image": "p0.png"}]))
    notes = prepare_ask(model.config, paths[:2], "What?").notes
    assert notes == [f"no camera geometry: {tmp_path / 'cameras.json'} does not list p1.png"]


def test_roomplan_on_a_stage1_model_says_so(tiny_model_dir, eval_records, tmp_path, monkeypatch, capsys):
    """It used to print an empty room; a model trained on question records is refused by name."""
    import shutil

    stage1 = tmp_path / "stage1"
    shutil.copytree(tiny_model_dir, stage1)
    config = stage1 / "config.yaml"
    config.write_text(config.read_text().replace("  train: []", f"  train:\n  - path: {eval_records}"))
    _, images = _record(eval_records, 1)
    _never_load(monkeypatch)
    assert vqkit_main(["ask", "--model", str(stage1), "--images", *images, "--roomplan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vqkit ask: error: {stage1} is not a Stage 2 model: it was trained on question answering "
                   f"(data.train {eval_records} has no 'roomplan' layouts); --roomplan needs a model trained on "
                   f"layouts, e.g. with configs/stage2_demo.yaml")


def test_photos_without_cameras_get_predicted_geometry(tiny_model_dir, tiny_vggt_file, tmp_path, monkeypatch,
                                                       capsys):
    """model.geometry.source auto: photos without a cameras file get the geometry VGGT's heads predict (said
    on stderr), also photos of different sizes; --no-geometry predicts nothing; a weights file without heads
    is named in one line."""
    import dataclasses

    from vqkit.models.builder import build_model, load_model_config
    from vqkit.tokenizer import load_tokenizer
    from vqkit.vggt.predictor import GeometryPredictor

    calls = []
    real_fill = GeometryPredictor.fill

    def fill(self, geometry, marked, *args, **kwargs):
        calls.append(marked.tolist())
        return real_fill(self, geometry, marked, *args, **kwargs)

    monkeypatch.setattr(GeometryPredictor, "fill", fill)
    cfg = load_model_config(tiny_model_dir, [f"model.encoder.weights={tiny_vggt_file}", "model.geometry.source=auto"])
    tokenizer = load_tokenizer(dataclasses.replace(cfg.model.llm, tokenizer=str(tiny_model_dir / "tokenizer")))
    auto_dir = build_model(cfg, tokenizer=tokenizer).save_pretrained(tmp_path / "auto")
    rng = np.random.default_rng(0)
    photos = []
    for name, size in (("wide.png", (80, 60)), ("tall.png", (60, 80))):  # different sizes in one question
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / name)
        photos.append(str(tmp_path / name))
    ask = ["ask", "--images", *photos, "--question", "What color is the chair?"]
    assert vqkit_main([*ask, "--model", str(auto_dir)]) == 0
    assert "vqkit ask: note: camera geometry predicted by VGGT's camera and depth heads" in capsys.readouterr().err
    assert calls == [[True]]
    assert vqkit_main([*ask, "--model", str(auto_dir), "--no-geometry"]) == 0
    assert "predicted" not in capsys.readouterr().err and len(calls) == 1
    # a model trained on records with poses: --set model.geometry.source=auto (and heads to load) predicts too
    assert vqkit_main([*ask, "--model", str(tiny_model_dir), "--encoder-weights", str(tiny_vggt_file),
                       "--set", "model.geometry.source=auto"]) == 0
    assert "camera geometry predicted" in capsys.readouterr().err and len(calls) == 2
    # ... which is what its note suggests when the encoder has the heads (and only then)
    assert vqkit_main([*ask, "--model", str(tiny_model_dir), "--encoder-weights", str(tiny_vggt_file)]) == 0
    assert (f"--set model.geometry.source=auto predicts it with the camera and depth heads of {tiny_vggt_file}"
            in capsys.readouterr().err) and len(calls) == 2
    # auto without head weights: no prediction, said once, with what works instead of the same --set again;
    # heads without them: one line
    assert vqkit_main([*ask, "--model", str(tiny_model_dir), "--set", "model.geometry.source=auto"]) == 0
    err = capsys.readouterr().err
    assert len(calls) == 2 and len(err.strip().splitlines()) == 1, err
    assert "(model.geometry.source auto cannot predict it: model.encoder.weights is not set" in err
    assert "--cameras FILE gives the photos' poses" in err and "model.geometry.source: auto (the demo's recipe" in err
    assert "--set model.geometry.source=auto" not in err
    assert vqkit_main([*ask, "--model", str(tiny_model_dir), "--set", "model.geometry.source=heads"]) == 2
    err = capsys.readouterr().err
    assert "model.geometry.source is heads but the geometry cannot be predicted" in err
    assert len(err.strip().splitlines()) == 1


def test_ask_about_a_video_or_a_folder_of_frames(tiny_model_dir, model, tmp_path, capsys):
    from conversation_fixtures import posed_scan, write_frame_folder, write_video_file

    from vqkit.eval.ask import prepare_ask

    video = write_video_file(tmp_path / "walk.mp4", n=40)
    prepared = prepare_ask(model.config, None, "What moves?", video=str(video))
    assert prepared.used[0].endswith("walk.mp4#frame=0") and prepared.used[-1].endswith("walk.mp4#frame=39")
    assert any("40 frames give 32" in n for n in prepared.notes)
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--video", str(video), "--question", "What moves?"]) == 0
    out = capsys.readouterr()
    assert out.out == ask(model, None, "What moves?", video=str(video)) + "\n" and "using 2 of 32 frames" in out.err
    folder = write_frame_folder(tmp_path / "frames", n=5)
    assert len(prepare_ask(model.config, None, "What?", video=str(folder)).used) == 2
    scan = posed_scan(tmp_path, "scene0004_00", frames=6)  # a posed_images folder: its poses are read
    posed = prepare_ask(model.config, None, "Where?", video=str(scan["folder"]))
    assert posed.sample["has_geometry"] and posed.used[0].endswith("00000.jpg")
    R, _ = scan["scene"].w2c(0)
    np.testing.assert_allclose(posed.sample["R"][0].numpy(), R, atol=1e-5)
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--video", str(tmp_path / "none.mp4"),
                       "--question", "What?"]) == 2
    assert capsys.readouterr().err.strip().endswith("none.mp4: video not found")
    with pytest.raises(SystemExit):
        vqkit_main(["ask", "--model", str(tiny_model_dir), "--video", str(video), "--images", "a.jpg",
                    "--question", "?"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_folders_and_an_animated_gif_are_read_as_their_views(tiny_model_dir, model, tmp_path, capsys):
    """`--images FOLDER` used to say "image not found"; a 4-frame GIF was read as one frame; the note on
    photos left out named bare file names, so two folders' views could not be told apart."""
    from vqkit.eval.ask import prepare_ask

    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
    for room in ("kitchen", "hall"):
        (tmp_path / room).mkdir()
        for i in (10, 2):  # name order compares numbers as numbers: 2 before 10
            Image.new("RGB", (64, 48), colours[i % 4]).save(tmp_path / room / f"rgb_{i}.png")
        Image.fromarray(np.full((48, 64), 900, dtype=np.uint16)).save(tmp_path / room / "depth_2.png")  # I;16
        (tmp_path / room / "notes.txt").write_text("not an image")
    folders = [str(tmp_path / "kitchen"), str(tmp_path / "hall")]
    prepared = prepare_ask(model.config, folders, "What is this?", cameras=False)
    assert prepared.notes == [
        f"{folders[0]}: 2 photo(s), in name order (1 single-channel image(s) left out as depth or label maps: "
        f"depth_2.png)",
        f"{folders[1]}: 2 photo(s), in name order (1 single-channel image(s) left out as depth or label maps: "
        f"depth_2.png)",
        "using 2 of 4 photos (the model takes data.num_views = 2, chosen evenly): kitchen/rgb_2.png, "
        "hall/rgb_10.png; left out: kitchen/rgb_10.png, hall/rgb_2.png"]
    assert prepared.used == [str(tmp_path / "kitchen" / "rgb_2.png"), str(tmp_path / "hall" / "rgb_10.png")]

    frames = [Image.new("RGB", (64, 48), c) for c in colours]
    gif = tmp_path / "walk.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    prepared = prepare_ask(model.config, [str(gif)], "What is this?", cameras=False)
    assert prepared.notes[0] == "walk.gif: 4 frames, read as 4 views"
    assert prepared.used == [f"{gif}#frame=0", f"{gif}#frame=3"]
    views = prepared.sample["images"]  # the frames themselves, not the first one twice
    for view, colour in zip(views, (colours[0], colours[3]), strict=True):
        mean = [round(255 * float(v)) for v in view.mean(dim=(1, 2))]
        assert all(abs(m - c) <= 3 for m, c in zip(mean, colour, strict=True)), (mean, colour)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--images", str(empty), "--question", "What?"]) == 2
    assert capsys.readouterr().err.strip() == (f"vqkit ask: error: {empty}: a folder without photos (.jpg, .jpeg, "
                                               f".png, .bmp, .webp, .gif, .apng, .tif, .tiff)")
    assert vqkit_main(["ask", "--model", str(tiny_model_dir), "--images", folders[0], str(gif), "--question",
                       "What?", "--max-new-tokens", "2", "--no-geometry"]) == 0
    err = capsys.readouterr().err
    assert "note: using 2 of 6 photos" in err and "kitchen/rgb_2.png" in err and "walk.gif#frame=3" in err


def test_a_missing_model_or_a_run_folder_is_the_same_line_for_ask_and_eval(tiny_model_dir, eval_records, tmp_path,
                                                                            capsys):
    """ask said "config.yaml is missing" where eval said "model folder not found"; --model RUN (a run folder
    with final/) now names RUN/final."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "final")
    (run / "config.yaml").write_text((run / "final" / "config.yaml").read_text())
    cases = {tmp_path / "gone": f"model folder not found: {tmp_path / 'gone'}",
             run: f"{run} is a run folder, not a model: its trained model is {run / 'final'} "
                  f"(--model {run / 'final'})",
             tmp_path: f"{tmp_path} is not a vqkit model folder: config.yaml is missing (expected config.yaml, "
                       f"trainable.safetensors, tokenizer/)"}
    for model, message in cases.items():
        ask_args = ["ask", "--model", str(model), "--images", str(eval_records.parent / "img" / "0_0.png"),
                    "--question", "What?"]
        eval_args = ["eval", "--model", str(model), "--data", str(eval_records), "--out", str(tmp_path / "out")]
        for command, args in (("ask", ask_args), ("eval", eval_args)):
            assert vqkit_main(args) == 2
            assert capsys.readouterr().err.strip() == f"vqkit {command}: error: {message}"


# ------------------------------------------------------------------ --ground


def test_ground_turns_the_first_views_box_into_the_cameras_frame(tiny_model_dir, model, eval_records, tmp_path,
                                                                  capsys, monkeypatch):
    """A model that writes boxes in the first view's frame: with cameras the box comes back in their frame;
    without, it stays in the first view's frame and a note says so; --out writes the JSON."""
    import copy

    from vqkit.eval.ask import ask_ground, prepare_ask
    from vqkit.roomplan import RoomObject
    from vqkit.roomplan.grounding import box_text, first_view_frame, grounding_question

    rec, images = _record(eval_records, 0)
    paths = _photos_with_cameras(rec, images, tmp_path / "scene")
    cfg = copy.deepcopy(model.config)
    cfg.data.box_frame = "first_view"
    prepared = prepare_ask(cfg, paths, grounding_question("the bed"))
    R0, t0 = prepared.sample["R"][0].numpy(), prepared.sample["t"][0].numpy()
    bed = RoomObject("b", "bed", (1.0, 0.5, 0.5), (1.6, 1.0, 2.0), 0.3)
    written = box_text(bed, first_view_frame(R0, t0))
    monkeypatch.setattr(type(model), "generate", lambda self, batch, max_new_tokens=16, **kw: [written])
    found = ask_ground(model, paths, "the bed", cfg=cfg)
    assert found.frame == "scene" and not found.problems
    assert np.allclose(found.box.center, bed.center, atol=0.02)
    assert "bed: centre (1.00, 0.50, 0.50) m" in found.summary()
    no_pose = ask_ground(model, paths, "the bed", cfg=cfg, cameras=False)
    assert no_pose.frame == "first_view" and not np.allclose(no_pose.box.center, bed.center, atol=0.05)

    out = tmp_path / "bed.json"
    args = ["ask", "--model", str(tiny_model_dir), "--images", *paths, "--ground", "the bed", "--out", str(out),
            "--set", "data.box_frame=first_view"]
    assert vqkit_main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("bed: centre (1.00, 0.50, 0.50) m") and "box written to" in captured.err
    data = json.loads(out.read_text())
    assert data["question"] == "Locate: the bed" and data["frame"] == "scene" and data["text"] == written
    assert np.allclose(data["box"]["center"], bed.center, atol=0.02) and np.asarray(data["corners"]).shape == (8, 3)


def test_ground_says_when_there_is_no_box(tiny_model_dir, eval_records, capsys):
    rec, images = _record(eval_records, 1)
    base = ["ask", "--model", str(tiny_model_dir), "--images", *images]
    assert vqkit_main([*base, "--ground", "the bed", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("no box: ") or out.out.split(":")[0].isidentifier()
    for extra, message in ((["--ground", "the bed", "--question", "q"], "only one of"),
                           (["--ground", "  "], "--ground")):
        assert vqkit_main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_depth_maps_beside_the_photos_for_a_model_that_reads_them(model, synth_dir, tmp_path):
    """A model with data.load_depth (the patch merger's 3D points) gets the depth PNGs its cameras file names
    beside the photos; without them a note says its tokens carry no 3D points."""
    import copy
    import shutil

    from vqkit.eval.ask import prepare_ask

    cfg = copy.deepcopy(model.config)
    cfg.data.load_depth = True
    scene = synth_dir / "scenes" / "scene00000"
    photos = sorted(str(p) for p in scene.glob("rgb_*.png"))
    prepared = prepare_ask(cfg, photos, "Locate: the bed")
    assert prepared.sample["depths"].shape[0] == len(photos) and float(prepared.sample["depths"].max()) > 0
    assert not any("depth" in n for n in prepared.notes)
    bare = tmp_path / "photos"
    bare.mkdir()
    for p in photos:
        shutil.copy(p, bare)
    shutil.copy(scene / "cameras.json", bare)
    prepared = prepare_ask(cfg, sorted(str(p) for p in bare.glob("rgb_*.png")), "Locate: the bed")
    assert "depths" not in prepared.sample and any("no depth maps for the photos" in n for n in prepared.notes)
