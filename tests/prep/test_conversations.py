"""Conversation files and vqkit records: posed_images frames read the same geometry as the ScanNet frame
converter (``vqkit prep scanqa|sqa3d``), ``vqkit prep conversations`` writes the records training reads,
and records -> ``vqkit prep export-conversations`` -> ``vqkit prep conversations`` gives the same records."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conversation_fixtures import gpt, human, photos, write_json, write_video_file
from helpers import make_corpus
from prep_trees import COLOR_WH

from vqkit import cameras as G
from vqkit.commands import main as vqkit_main
from vqkit.data.schema import load_records
from vqkit.prep import scannet
from vqkit.prep.conversations import to_conversations, to_records


@pytest.mark.parametrize("image_size", [COLOR_WH[0], 112])  # frames written as they are, and resized
def test_posed_images_geometry_equals_the_scannet_converter(scannet_tree, tmp_path, image_size):
    scene_id = "scene0002_00"  # the posed_images scene (with two -inf frames the converter skips)
    r = scannet.convert_scene(scene_id, str(scannet_tree["root"]), str(tmp_path / "prep"), num_views=6,
                              image_size=image_size, depth_bins=16)
    prepped = r.manifest["geom_token"]
    frames = [f"posed_images/{scene_id}/{int(f):05d}.jpg" for f in r.manifest["frames"]]
    sample = {"images": frames, "conversations": [human("<image>" * len(frames) + "\nWhere?"), gpt("here")]}
    src = write_json(tmp_path / "conv.json", [sample])
    to_records(src, tmp_path / "records.jsonl", image_root=str(scannet_tree["root"]))
    [record] = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    ours = {k: np.asarray(v) for k, v in record["geom_token"].items()}
    np.testing.assert_allclose(ours["R"], prepped["R"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours["t"], prepped["t"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours["depth_hist"], prepped["depth_hist"], rtol=0, atol=1e-6)
    # K is the K of the image as stored: the converter wrote its copy at image_size.
    written = (image_size, round(COLOR_WH[1] * image_size / COLOR_WH[0]))
    K = np.stack([G.resize_intrinsics(k, COLOR_WH, written) for k in ours["K"]])
    np.testing.assert_allclose(K, prepped["K"], rtol=0, atol=1e-6)
    assert record["depths"] == [f.replace(".jpg", ".png") for f in frames]


def _same_records(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        dx, dy = dataclasses.asdict(x), dataclasses.asdict(y)
        for d in (dx, dy):
            d.pop("source"), d.pop("line")
        gx, gy = dx.pop("geometry"), dy.pop("geometry")
        assert dx == dy
        assert (gx is None) == (gy is None)
        if gx is not None:
            for key in gx:
                np.testing.assert_array_equal(gx[key], gy[key])


def test_records_to_conversations_and_back_are_the_same_records(tmp_path):
    corpus = make_corpus(tmp_path / "d", n=4, views=3)
    raw = [*corpus.records[:3], {**corpus.records[0], "id": "sit-1", "situation": "I sit on the bed.", "qtype": "what",
                                 "question": "<image>\nWhat is on my left?", "answers": ["lamp", "a lamp"]}]
    raw.append({**corpus.records[1], "id": "conv-1", "turn": 1, "conversation": "c1", "system": "Be brief."})
    raw.append({**corpus.records[1], "id": "conv-1", "turn": 2, "conversation": "c1", "system": "Be brief.",
                "question": "And the colour?", "answer": "red"})
    src = write_json(tmp_path / "d" / "records.jsonl", raw, jsonl=True)
    to_conversations(src, tmp_path / "d" / "exported.json")
    samples = json.loads((tmp_path / "d" / "exported.json").read_text())
    assert len(samples) == 5 and samples[0]["conversations"][0]["value"].endswith("\n<image><image><image>")
    assert samples[3]["conversations"][0]["value"] == "I sit on the bed. <image><image><image>\nWhat is on my left?"
    assert [t["from"] for t in samples[4]["conversations"]] == ["system", "human", "gpt", "human", "gpt"]
    to_records(tmp_path / "d" / "exported.json", tmp_path / "d" / "back.jsonl")
    back = [json.loads(line) for line in (tmp_path / "d" / "back.jsonl").read_text().splitlines()]
    assert back[0] == {**raw[0], "id": raw[0]["id"]} and back[3] == raw[3]
    _same_records(load_records(str(src)), load_records(str(tmp_path / "d" / "back.jsonl")))


def test_the_synthetic_benchmark_round_trips(synth_dir, tmp_path):
    src = tmp_path / "val.jsonl"
    src.write_text("".join(synth_dir.joinpath("val.jsonl").read_text().splitlines(keepends=True)[:20]))
    out = tmp_path / "exported_val.jsonl"
    to_conversations(src, out, image_root=str(synth_dir))
    to_records(out, tmp_path / "back.jsonl", image_root=str(synth_dir))
    original = [json.loads(line) for line in src.read_text().splitlines()]
    back = [json.loads(line) for line in (tmp_path / "back.jsonl").read_text().splitlines()]
    assert back == original


def test_video_records_export_as_a_video(tmp_path):
    write_video_file(tmp_path / "clip.mp4", n=6)
    sample = {"id": "v", "video": "clip.mp4", "conversations": [human("<video>\nWhat moves?"), gpt("a bar")]}
    write_json(tmp_path / "conv.json", [sample])
    to_records(tmp_path / "conv.json", tmp_path / "records.jsonl")
    to_conversations(tmp_path / "records.jsonl", tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())[0]
    assert again["video"] == "clip.mp4" and again["conversations"][0]["value"] == "<video>\nWhat moves?"


def test_commands_print_what_they_did_and_refuse_bad_input(tmp_path, capsys):
    names = photos(tmp_path, 2)
    good = {"image": names[0], "conversations": [human("<image>\nWhat is it?"), gpt("a chair")]}
    bad = {"image": names[1], "conversations": [human("What is it?"), gpt("a chair")]}
    src = write_json(tmp_path / "llava.json", [good, bad])
    assert vqkit_main(["prep", "conversations", "--in", str(src), "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "llava.json:15: field 'conversations[0].value': 0 <image>/<video> placeholders" in err
    assert vqkit_main(["prep", "conversations", "--in", str(src), "--out", str(tmp_path / "r.jsonl"),
                       "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "1 records from 2 samples" in out and "skipped 1 bad samples" in out
    assert vqkit_main(["prep", "conversations", "--in", str(src), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert vqkit_main(["prep", "export-conversations", "--in", str(src), "--out", str(src), "--overwrite"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert vqkit_main(["prep", "export-conversations", "--in", str(tmp_path / "r.jsonl"),
                       "--out", str(tmp_path / "c.jsonl")]) == 0
    assert "1 samples from 1 records" in capsys.readouterr().out
