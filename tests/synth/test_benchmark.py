"""vqkit.synth.benchmark: the dataset on disk (records, Stage 2 targets, splits), deterministic for a
seed and independent of the worker count, reused only when made with the same arguments. Train and val
alone are byte-identical to those of a set with all three splits (every room has its own seed, the
split assignment is over all rooms), the test rooms are not rendered, and a set with more splits than
asked for is reused."""

from __future__ import annotations

import json

import pytest
from helpers import REPO

from vqkit import synth
from vqkit.errors import ConfigError
from vqkit.synth.benchmark import ensure_synth, generate, split_scenes
from vqkit.synth.questions import DESCRIBE_QUESTION, describe_objects


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
    out, stats = dataset
    kw = dict(scenes=6, views=3, image_size=stats["args"]["image_size"], questions_per_scene=10, tokenizer=False,
              progress=False)
    synth.generate(tmp_path / "a", seed=3, workers=2, **kw)
    for name in ["train.jsonl", "val.jsonl", "test.jsonl", "roomplan_train.jsonl",
                 "scenes/scene00002/layout.json", "scenes/scene00002/depth_01.png",
                 "scenes/scene00002/semantic_01.png"]:
        assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes(), name
    synth.generate(tmp_path / "b", seed=4, scenes=2, views=2, image_size=32, tokenizer=False, progress=False)
    la = json.loads((out / "scenes/scene00000/layout.json").read_text())
    lb = json.loads((tmp_path / "b/scenes/scene00000/layout.json").read_text())
    assert la["room"] != lb["room"]


def test_more_questions_for_the_training_rooms_only(tmp_path, dataset):
    """train_questions_per_scene asks more of the training rooms; a room's first questions and the
    val / test splits stay those of questions_per_scene."""
    out, made = dataset
    stats = synth.generate(tmp_path / "c", scenes=6, views=3, image_size=made["args"]["image_size"], seed=3, workers=1,
                           questions_per_scene=4, train_questions_per_scene=10, tokenizer=False, progress=False)
    assert (tmp_path / "c" / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    for split in ("val", "test"):
        full, short = ([json.loads(line) for line in (d / f"{split}.jsonl").read_text().splitlines()]
                       for d in (out, tmp_path / "c"))
        for scene in {r["scene_id"] for r in full}:
            mine = [r for r in short if r["scene_id"] == scene]
            assert 0 < len(mine) <= 4 and mine == [r for r in full if r["scene_id"] == scene][:len(mine)]
    assert stats["args"]["questions_per_scene"] == 4 and stats["args"]["train_questions_per_scene"] == 10
    assert stats["questions"]["train"] > 2 * stats["questions"]["val"]


def test_describe_is_added_to_the_training_rooms_only(tmp_path, dataset):
    """train_describe appends one describe question to every training room, after its drawn ones
    (whose records stay byte for byte); val and test do not change; the answers match the layouts."""
    from vqkit.synth.catalogue import CATEGORIES

    out, made = dataset
    stats = synth.generate(tmp_path / "e", scenes=6, views=3, image_size=made["args"]["image_size"], seed=3, workers=1,
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


def test_bad_arguments_are_config_errors(tmp_path):
    from vqkit.errors import ConfigError

    with pytest.raises(ConfigError):
        synth.generate(tmp_path, scenes=0)
    with pytest.raises(ConfigError):
        synth.generate(tmp_path, scenes=1, image_format="gif")
    with pytest.raises(ConfigError, match="train-questions-per-scene"):
        synth.generate(tmp_path, scenes=1, train_questions_per_scene=0)


ARGS = {"scenes": 9, "views": 1, "image_size": 16, "seed": 5, "render_scale": 1, "train_questions_per_scene": 10,
        "train_describe": True}


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "stats.json"}


def test_train_and_val_alone_are_the_same_bytes_without_the_test_rooms(tmp_path):
    full, partial = tmp_path / "full", tmp_path / "partial"
    generate(full, workers=1, progress=False, **ARGS)
    stats = generate(partial, workers=2, progress=False, splits=("val", "train"), **ARGS)
    test_rooms = {f"scenes/scene{i:05d}" for i in split_scenes(ARGS["scenes"], ARGS["seed"])["test"]}
    assert test_rooms
    kept = {name: data for name, data in _files(full).items()
            if not name.startswith(("test.jsonl", "roomplan_test.jsonl"))
            and not any(name.startswith(room + "/") for room in test_rooms)}
    assert _files(partial) == kept  # records, rooms and the tokenizer, byte for byte
    assert stats["args"]["splits"] == ["train", "val"] and set(stats["scenes"]) == {"train", "val"}
    assert stats["blind_evaluated_on"] == "val"
    written = json.loads((partial / "stats.json").read_text())
    assert written["args"]["splits"] == ["train", "val"]


def test_a_set_with_more_splits_is_reused_and_one_with_fewer_is_completed(tmp_path, capsys):
    synth_args = {k: ARGS[k] for k in ("scenes", "views", "image_size", "seed", "render_scale",
                                       "train_questions_per_scene", "train_describe")}
    out = tmp_path / "set"
    ensure_synth(out, splits=("train", "val"), progress=False, **synth_args)
    assert not (out / "test.jsonl").exists()
    before = (out / "val.jsonl").read_bytes()
    ensure_synth(out, progress=False, **synth_args)  # all three asked for: the test split is added
    assert "regenerating the synthetic rooms" in capsys.readouterr().out
    assert (out / "test.jsonl").is_file() and (out / "val.jsonl").read_bytes() == before
    stats = ensure_synth(out, splits=("train", "val"), progress=False, **synth_args)  # a superset: reused
    assert "reusing the synthetic rooms" in capsys.readouterr().out
    assert stats["args"]["splits"] == ["train", "val", "test"]
    # Regenerated for other rooms with fewer splits, no test split of the earlier rooms stays behind.
    ensure_synth(out, splits=("train", "val"), progress=False, **{**synth_args, "seed": 6})
    assert not (out / "test.jsonl").exists() and not (out / "roomplan_test.jsonl").exists()


def test_the_splits_must_include_train(tmp_path):
    with pytest.raises(ConfigError, match=r"the splits to write are train and any of val, test; got \['val'\]"):
        generate(tmp_path / "x", scenes=3, splits=("val",), progress=False)


def test_use_synthetic_data_reads_the_kind_of_records_the_config_trains_on(synth_dir):
    """A Stage 2 config gets the set's layouts and a grounding config its expressions (a notebook's
    `data_dir` must not turn a Stage 2 run into a question-answering one); the demo's config the questions."""
    from vqkit.config.io import load_config

    for config, records in (("configs/stage2_demo.yaml", "roomplan_"), ("configs/grounding_demo.yaml", "grounding_"),
                            ("configs/demo.yaml", "")):
        cfg = load_config(REPO / config)
        synth.use_synthetic_data(cfg, synth_dir)
        assert [s.path for s in cfg.data.train] == [str(synth_dir / f"{records}train.jsonl")], config
        assert [s.path for s in cfg.data.val] == [str(synth_dir / f"{records}val.jsonl")], config
    cfg = load_config(REPO / "configs/stage2_demo.yaml")
    synth.use_synthetic_data(cfg, synth_dir, records="")  # a prefix given wins
    assert cfg.data.train[0].path == str(synth_dir / "train.jsonl")
