"""vqkit.synth.benchmark: rendered depth, poses and K agree with the layout; answers agree with the
layout; outputs are deterministic for a seed and independent of the worker count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqkit.synth.catalogue  # noqa: F401 - the submodules named below
import vqkit.synth.render  # noqa: F401
import vqkit.synth.rooms  # noqa: F401
import vqkit.synth.scene  # noqa: F401
from vqkit import cameras as geo
from vqkit import synth
from vqkit.commands.synth import main as synth_command
from vqkit.synth.questions import DESCRIBE_QUESTION, QTYPES, describe_objects, round_metres

SIZE = 48


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    stats = synth.generate(out, scenes=6, views=3, image_size=SIZE, seed=3, workers=1,
                           questions_per_scene=10, tokenizer=False, progress=False)
    return out, stats


def _scenes(out: Path):
    for folder in sorted((out / "scenes").iterdir()):
        yield json.loads((folder / "layout.json").read_text()), json.loads((folder / "cameras.json").read_text())


def test_backprojected_depth_lies_inside_the_room(dataset):
    out, _ = dataset
    for layout, cams in _scenes(out):
        lo = np.array(layout["room"]["bbox"][:3]) - 0.02
        hi = np.array(layout["room"]["bbox"][3:]) + 0.02
        for cam in cams:
            mm = np.array(Image.open(out / cam["depth"]))
            assert mm.dtype == np.uint16 and mm.shape == (SIZE, SIZE)
            depth = geo.depth_png_to_metres(mm)
            assert (depth > 0).mean() > 0.99  # a closed room: every ray hits something
            pts = geo.backproject_depth(depth, np.array(cam["K"]), np.array(cam["R"]), np.array(cam["t"]))
            inside = np.all((pts >= lo) & (pts <= hi), axis=1)
            assert inside.mean() >= 0.99, (layout["scene_id"], cam["view"], inside.mean())
            np.testing.assert_allclose(np.sum(cam["depth_hist"]), 1.0, atol=1e-4)


def test_render_matches_geometry_exactly():
    """Depth is camera z at pixel centres: back-projected object pixels fall in the object's box, and a
    visible object's centre projects inside the image of a view that sees it."""
    sc = synth.scene.make_scene(seed=11, index=0, views=4, image_size=64)
    layout, K = sc["layout"], sc["K"]
    checked = 0
    for i, obj in enumerate(layout["objects"]):
        c, (w, h, d) = np.array(obj["center"]), obj["size"]
        half = max(w, d) / 2 + 0.02  # axis-aligned bound of a yawed box (yaw is a multiple of 90 deg)
        for v in obj["visible_views"]:
            (u, vv), z = [a[0] for a in geo.project(c[None], sc["R"][v], sc["t"][v], K)]
            assert z > 0 and 0 <= u < 64 and 0 <= vv < 64
            mask = sc["labels"][v] == int(obj["id"].split("_")[1])
            assert mask.sum() >= layout["min_visible_pixels"]
            depth = np.where(mask, sc["depth"][v], 0.0)
            pts = geo.backproject_depth(depth, K, sc["R"][v], sc["t"][v])
            assert np.all(np.abs(pts[:, :2] - c[:2]) <= half + 1e-3)
            assert np.all((pts[:, 2] >= c[2] - h / 2 - 0.02) & (pts[:, 2] <= c[2] + h / 2 + 0.02))
            checked += 1
    assert checked > 0
    # The renderer needs no vertical flip: the floor is in the lower half, the ceiling in the upper.
    floor = np.mean(np.nonzero(sc["labels"][0] == synth.render.FLOOR)[0])
    ceiling = np.mean(np.nonzero(sc["labels"][0] == synth.render.CEILING)[0]) if (sc["labels"][0] == synth.render.CEILING).any() else 0
    assert floor > 32 > ceiling


def test_walls_and_floor_wear_the_paint_the_layout_names():
    """The room_colour answers are what the views show: wall pixels are the named wall paint, floor
    pixels the named floor tiles, each shaded, and nearer that paint than any other of its palette."""
    sc = synth.scene.make_scene(seed=5, index=2, views=4, image_size=64)
    room, rgb, labels = sc["layout"]["room"], sc["rgb"].astype(float) / 255, sc["labels"]
    for label, palette, name in ((synth.render.WALL, synth.catalogue.WALL_PALETTE, room["wall_colour"]),
                                 (synth.render.FLOOR, synth.catalogue.FLOOR_PALETTE, room["floor_colour"])):
        pixels = rgb[labels == label]
        assert len(pixels) > 500
        mean = pixels.mean(0)

        def distance(paint):  # best shading factor per candidate paint, then the residual
            paint = np.array(paint)
            return np.linalg.norm(mean - paint * (mean @ paint) / (paint @ paint))

        assert min(palette, key=lambda c: distance(palette[c])) == name
    colours = {(s["layout"]["room"]["wall_colour"], s["layout"]["room"]["floor_colour"])
               for s in (synth.scene.make_scene(seed=5, index=i, views=1, image_size=16) for i in range(12))}
    assert len(colours) > 4  # rooms differ in paint


def test_layout_is_physical():
    for index in range(4):
        layout = synth.scene.make_scene(seed=5, index=index, views=2, image_size=32)["layout"]
        room = layout["room"]
        fps = []
        for o in layout["objects"]:
            assert o["category"] in synth.catalogue.CATEGORIES and o["colour"] in synth.catalogue.PALETTE
            c, (w, h, d) = o["center"], o["size"]
            hw, hd = (w / 2, d / 2) if abs(np.sin(o["yaw"])) < 0.5 else (d / 2, w / 2)
            fp = [c[0] - hw, c[1] - hd, c[0] + hw, c[1] + hd]
            assert synth.rooms.inside_room(fp, room, margin=-2e-4)
            assert c[2] - h / 2 >= -2e-4 and c[2] + h / 2 <= room["height"]
            if o["on"] is None:
                assert abs(c[2] - h / 2) < 2e-4  # stands on the floor (4-decimal rounding)
                fps.append(fp)
        for i in range(len(fps)):
            for j in range(i):
                assert not synth.rooms.rects_overlap(fps[i], fps[j]), "objects overlap"
        assert layout["doors"] and layout["windows"]
        assert 2.4 <= room["height"] <= 3.0 and room["width"] <= room["length"]


def test_cameras_like_a_phone_scan():
    sc = synth.scene.make_scene(seed=2, index=1, views=6, image_size=32)
    bbox = sc["layout"]["room"]["bbox"]
    for R, t in zip(sc["R"], sc["t"]):
        assert geo.is_rotation(R)
        eye = geo.camera_centre(R, t)
        assert 1.2 <= eye[2] <= 1.7
        assert bbox[0] < eye[0] < bbox[3] and bbox[1] < eye[1] < bbox[4]
        forward = R[2]
        assert forward[2] < 0  # looking a little down, not at the ceiling
    np.testing.assert_allclose(sc["K"][:2, 2], [16, 16])


def test_answers_agree_with_the_layout(dataset):
    out, stats = dataset
    layouts = {lay["scene_id"]: lay for lay, _ in _scenes(out)}
    words = {v[0]: k for k, v in synth.catalogue.CATEGORIES.items()}
    plurals = {v[1]: k for k, v in synth.catalogue.CATEGORIES.items()}
    seen_qtypes = set()
    for split in synth.benchmark.SPLITS:
        for line in (out / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            lay = layouts[r["scene_id"]]
            objs = lay["objects"]
            seen_qtypes.add(r["qtype"])
            assert r["task"] == "synth" and r["answers"] == [r["answer"]] and r["answer"]
            if " or " not in r["question"]:  # a choice question names both options; others never the answer
                assert r["answer"] not in r["question"].lower().replace("?", "").split()
            assert len(r["images"]) == len(r["depths"]) == len(r["geom_token"]["R"]) == 3
            assert all((out / p).is_file() for p in r["images"] + r["depths"])
            q = r["question"]
            if r["qtype"] == "counting":
                cat = plurals[q.split()[2]]
                assert r["answer"] == str(sum(o["category"] == cat for o in objs))
            elif r["qtype"] == "colour":
                cat = words.get(q.split()[-1].rstrip("?")) or plurals[q.split()[-1].rstrip("?")]
                assert {o["colour"] for o in objs if o["category"] == cat} == {r["answer"]}
            elif r["qtype"] == "what_colour_object":
                colour = q.split()[-1].rstrip("?")
                assert {o["category"] for o in objs if o["colour"] == colour} == {words[r["answer"]]}
            elif r["qtype"] == "existence":
                words_q = q.rstrip("?").split()
                cat = words[words_q[-4]]
                colour = words_q[-5] if words_q[-5] in synth.catalogue.PALETTE else None
                present = any(o["category"] == cat and (colour is None or o["colour"] == colour) for o in objs)
                assert r["answer"] == ("yes" if present else "no")
            elif r["qtype"] == "measurement":
                if "room" in q:
                    key = "width" if "wide" in q else "length"
                    assert r["answer"] == str(round_metres(lay["room"][key]))
            elif r["qtype"] == "situated":
                assert r["situation"].startswith("I am ")
            elif r["qtype"] == "room_colour":
                key = "wall_colour" if "walls" in q else "floor_colour"
                palette = synth.catalogue.WALL_PALETTE if "walls" in q else synth.catalogue.FLOOR_PALETTE
                assert r["answer"] == lay["room"][key] and r["answer"] in palette
    assert seen_qtypes == set(QTYPES)
    assert set(stats["blind"]) >= set(QTYPES) - {"relation", "situated"}


def test_records_and_roomplan_targets(dataset):
    from vqkit.roomplan import Room

    out, stats = dataset
    ids = {s: {json.loads(x)["scene_id"] for x in (out / f"roomplan_{s}.jsonl").read_text().splitlines()}
           for s in synth.benchmark.SPLITS}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert sum(len(v) for v in ids.values()) == 6
    for s in synth.benchmark.SPLITS:
        q_ids = {json.loads(x)["scene_id"] for x in (out / f"{s}.jsonl").read_text().splitlines()}
        assert q_ids <= ids[s]  # questions of a scene stay in its split
    rec = json.loads((out / "roomplan_train.jsonl").read_text().splitlines()[0])
    assert rec["task"] == "roomplan" and rec["question"]
    room = Room.from_capturedroom(rec["roomplan"])
    layout = json.loads((out / "scenes" / rec["scene_id"] / "layout.json").read_text())
    assert len(room.walls) == len(layout["walls"]) and len(room.objects) == len(layout["objects"])
    assert len(room.doors) == len(layout["doors"]) and len(room.windows) == len(layout["windows"])
    assert room.to_text()
    assert stats["timings"]["scenes_per_s"] > 0 and stats["bytes_per_scene"] > 0


def test_deterministic_for_a_seed_and_worker_count(tmp_path, dataset):
    out, _ = dataset
    kw = dict(scenes=6, views=3, image_size=SIZE, questions_per_scene=10, tokenizer=False, progress=False)
    synth.generate(tmp_path / "a", seed=3, workers=2, **kw)
    for name in ["train.jsonl", "val.jsonl", "test.jsonl", "roomplan_train.jsonl",
                 "scenes/scene00002/layout.json", "scenes/scene00002/depth_01.png", "scenes/scene00002/semantic_01.png"]:
        assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes(), name
    synth.generate(tmp_path / "b", seed=4, scenes=2, views=2, image_size=32, tokenizer=False, progress=False)
    la = json.loads((out / "scenes/scene00000/layout.json").read_text())
    lb = json.loads((tmp_path / "b/scenes/scene00000/layout.json").read_text())
    assert la["room"] != lb["room"]


def test_more_questions_for_the_training_rooms_only(tmp_path, dataset):
    """train_questions_per_scene asks more of the training rooms; a room's first questions and the
    val / test splits stay those of questions_per_scene."""
    out, _ = dataset
    stats = synth.generate(tmp_path / "c", scenes=6, views=3, image_size=SIZE, seed=3, workers=1, questions_per_scene=4,
                           train_questions_per_scene=10, tokenizer=False, progress=False)
    assert (tmp_path / "c" / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    for split in ("val", "test"):
        full, short = ([json.loads(line) for line in (d / f"{split}.jsonl").read_text().splitlines()]
                       for d in (out, tmp_path / "c"))
        for scene in {r["scene_id"] for r in full}:
            mine = [r for r in short if r["scene_id"] == scene]
            assert 0 < len(mine) <= 4 and mine == [r for r in full if r["scene_id"] == scene][:len(mine)]
    assert stats["args"]["questions_per_scene"] == 4 and stats["args"]["train_questions_per_scene"] == 10
    assert stats["questions"]["train"] > 2 * stats["questions"]["val"]


def test_describe_names_every_seen_category_with_its_colour_and_count():
    """The describe answer lists the categories a view shows well, in the catalogue's order, each
    with its colour and its number of well-visible instances (singular for one); objects no view
    shows well are left out, and a room without any says "nothing"."""
    from vqkit.synth.catalogue import CATEGORIES

    def obj(cat, colour, views):
        return {"category": cat, "colour": colour, "visible_views": views}

    order = list(CATEGORIES)
    first, second = order[0], order[1]
    layout = {"objects": [obj(second, "red", [0]), obj(first, "blue", [1, 2]), obj(second, "red", [2]),
                          obj(second, "red", []), obj(order[2], "green", [])]}
    item = describe_objects(layout, CATEGORIES)
    assert item == {"qtype": "describe", "question": DESCRIBE_QUESTION,
                    "answer": f"1 blue {CATEGORIES[first][0]}, 2 red {CATEGORIES[second][1]}"}
    assert describe_objects({"objects": [obj(first, "blue", [])]}, CATEGORIES)["answer"] == "nothing"


def test_describe_is_added_to_the_training_rooms_only(tmp_path, dataset):
    """train_describe appends one describe question to every training room, after its drawn ones
    (whose records stay byte for byte); val and test do not change; the answers match the layouts."""
    from vqkit.synth.catalogue import CATEGORIES

    out, _ = dataset
    stats = synth.generate(tmp_path / "e", scenes=6, views=3, image_size=SIZE, seed=3, workers=1,
                           questions_per_scene=10, train_describe=True, tokenizer=False, progress=False)
    for split in ("val", "test"):
        assert (tmp_path / "e" / f"{split}.jsonl").read_bytes() == (out / f"{split}.jsonl").read_bytes()
    lines = (tmp_path / "e" / "train.jsonl").read_text().splitlines()
    described = [json.loads(line) for line in lines if json.loads(line)["qtype"] == "describe"]
    drawn = [line for line in lines if json.loads(line)["qtype"] != "describe"]
    assert len(described) == stats["scenes"]["train"] == stats["questions_per_qtype"]["train"]["describe"]
    assert "\n".join(drawn) + "\n" == (out / "train.jsonl").read_text()
    for rec in described:
        layout = json.loads((tmp_path / "e" / "scenes" / rec["scene_id"] / "layout.json").read_text())
        assert rec["answer"] == rec["answers"][0] == describe_objects(layout, CATEGORIES)["answer"] != "nothing"
        others = sum(json.loads(line)["scene_id"] == rec["scene_id"] for line in drawn)  # up to 10 distinct
        assert rec["id"] == f"{rec['scene_id']}_q{others:02d}" and rec["question"] == DESCRIBE_QUESTION
    assert stats["args"]["train_describe"] is True and "describe" not in stats["answers_per_qtype"]


def test_ensure_synth_reuses_only_a_set_made_with_the_same_arguments(tmp_path, capsys):
    """The demo's rooms: reused when stats.json says they were made with the demo's arguments, else
    regenerated in place with a line saying which argument differs. The render scale changes the
    pixels only: the same rooms, questions and records (the demo renders at 1, `vqkit synth` at 2)."""
    kw = dict(scenes=3, views=2, image_size=32, seed=1, train_questions_per_scene=10, progress=False)
    synth.ensure_synth(tmp_path, render_scale=1, **kw)
    records = (tmp_path / "train.jsonl").read_bytes()
    written = (tmp_path / "train.jsonl").stat().st_mtime_ns
    aliased = (tmp_path / "scenes" / "scene00000" / "rgb_00.png").read_bytes()
    capsys.readouterr()

    synth.ensure_synth(tmp_path, render_scale=1, **kw)
    assert capsys.readouterr().out == f"reusing the synthetic rooms in {tmp_path}\n"
    assert (tmp_path / "train.jsonl").stat().st_mtime_ns == written

    stats = synth.ensure_synth(tmp_path, render_scale=2, **kw)
    assert f"regenerating the synthetic rooms in {tmp_path} (render_scale 1 -> 2)" in capsys.readouterr().out
    assert stats["args"]["render_scale"] == 2
    assert (tmp_path / "train.jsonl").read_bytes() == records
    assert (tmp_path / "scenes" / "scene00000" / "rgb_00.png").read_bytes() != aliased

    stats = synth.ensure_synth(tmp_path, render_scale=2, train_describe=True, **kw)
    assert f"regenerating the synthetic rooms in {tmp_path} (train_describe False -> True)" in capsys.readouterr().out
    assert stats["questions_per_qtype"]["train"]["describe"] == stats["scenes"]["train"]


def test_cli_and_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    rc = synth_command(["--out", str(tmp_path / "d"), "--scenes", "3", "--views", "2", "--image-size", "32",
                     "--seed", "1", "--workers", "1", "--quiet", "--vocab-size", "300",
                     "--train-questions-per-scene", "12", "--train-describe"])
    assert rc == 0
    assert (tmp_path / "d" / "tokenizer" / "tokenizer.json").is_file()
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["scenes"] == {"train": 1, "val": 1, "test": 1}
    assert stats["args"]["train_questions_per_scene"] == 12 and stats["questions"]["train"] > 8
    assert stats["args"]["train_describe"] is True and stats["questions_per_qtype"]["train"]["describe"] == 1


def test_bad_arguments_are_config_errors(tmp_path):
    from vqkit.errors import ConfigError

    with pytest.raises(ConfigError):
        synth.generate(tmp_path, scenes=0)
    with pytest.raises(ConfigError):
        synth.generate(tmp_path, scenes=1, image_format="gif")
    with pytest.raises(ConfigError):
        synth_command(["--out", str(tmp_path), "--splits", "a,b"])
    with pytest.raises(ConfigError, match="train-questions-per-scene"):
        synth.generate(tmp_path, scenes=1, train_questions_per_scene=0)


def test_semantic_maps_label_every_pixel_with_the_layouts_classes(dataset):
    """semantic_XX.png holds, per pixel, the class of the surface the ray hit: objects with the
    pixel counts their layout entry records, walls / floor / ceiling / doors / windows, and 255 only
    where no surface was hit; every record names its maps."""
    from vqkit.synth.catalogue import CATEGORIES, SEMANTIC_CLASSES

    out, stats = dataset
    assert stats["semantic_classes"] == {"names": SEMANTIC_CLASSES, "unlabelled": 255}
    first_object = SEMANTIC_CLASSES.index(next(iter(CATEGORIES)))
    seen = set()
    for layout, cameras in _scenes(out):
        for v, cam in enumerate(cameras):
            img = Image.open(out / cam["semantics"])
            assert img.mode == "L" and img.size == (SIZE, SIZE)
            classes = np.asarray(img)
            depth = geo.depth_png_to_metres(np.asarray(Image.open(out / cam["depth"])))
            np.testing.assert_array_equal(classes == 255, depth == 0)  # unlabelled = nothing hit
            seen |= set(np.unique(classes).tolist())
            for category in CATEGORIES:
                expected = sum(o["pixels"][v] for o in layout["objects"] if o["category"] == category)
                assert int((classes == first_object + list(CATEGORIES).index(category)).sum()) == expected
            if layout["doors"]:
                assert int((classes == SEMANTIC_CLASSES.index("door")).sum()) == \
                    sum(d["pixels"][v] for d in layout["doors"])
    assert {SEMANTIC_CLASSES.index("floor"), SEMANTIC_CLASSES.index("wall")} <= seen
    assert len(seen - {255}) > 5 and max(seen - {255}) < len(SEMANTIC_CLASSES)
    rec = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert rec["semantics"] == [c["semantics"] for c in _scenes_cameras(out, rec["scene_id"])]


def _scenes_cameras(out: Path, scene_id: str) -> list[dict]:
    return json.loads((out / "scenes" / scene_id / "cameras.json").read_text())
