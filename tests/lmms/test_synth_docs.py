"""vqkit.lmms.synth_docs: the documents of vqkit's lmms-eval tasks, their prompts, and their scores checked
by hand (no lmms-eval needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vqkit.errors import DataError
from vqkit.lmms import synth_docs as sd
from vqkit.synth.spatial import spatial_records

VSI_PROMPTS = {"pre_prompt": "", "mca_post_prompt": "Answer with the option's letter from the given choices directly.",
               "na_post_prompt": "Please answer the question using a single word or phrase."}


def test_synth_docs_are_the_val_records_with_their_cameras(synth_dir):
    docs = sd.synth_docs(synth_dir)
    raw = [json.loads(line) for line in (synth_dir / "val.jsonl").read_text().splitlines()]
    assert [d["id"] for d in docs] == [r["id"] for r in raw]
    for doc, rec in zip(docs, raw, strict=True):
        assert doc["images"] == [str(synth_dir / p) for p in rec["images"]]
        assert all(Path(p).is_file() for p in doc["images"])
        cameras = json.loads(doc["cameras"])
        assert [c["image"] for c in cameras] == [Path(p).name for p in rec["images"]]
        for key in ("R", "t", "K", "depth_hist"):
            assert [c[key] for c in cameras] == rec["geom_token"][key]
        assert doc["answers"] == rec["answers"] and doc["qtype"] == rec["qtype"] and doc["options"] == []


def test_spatial_docs_are_the_spatial_records(synth_dir):
    docs, records = sd.spatial_docs(synth_dir), spatial_records(synth_dir)
    assert [d["id"] for d in docs] == [r["id"] for r in records] and docs
    for doc, rec in zip(docs, records, strict=True):
        assert doc["options"] == rec.get("options", []) and doc["answers"] == [rec["answer"]]
        assert len(json.loads(doc["cameras"])) == len(doc["images"])


def test_synth_prompt_is_vqkit_eval_s_question():
    doc = {"question": "Is the sofa on my left or right?", "situation": "I am standing at the door facing the bed."}
    assert sd.synth_doc_to_text(doc, {"post_prompt": ""}) == \
        "I am standing at the door facing the bed. Is the sofa on my left or right?"
    assert sd.synth_doc_to_text({"question": "What colour is the bed?", "situation": ""},
                                {"post_prompt": "\nAnswer briefly."}) == "What colour is the bed?\nAnswer briefly."


def test_spatial_prompt_is_vsibench_s():
    numeric = {"question": "How many chairs are in this room?", "options": []}
    assert sd.spatial_doc_to_text(numeric, VSI_PROMPTS) == \
        "How many chairs are in this room?\nPlease answer the question using a single word or phrase."
    choice = {"question": "Which is closest to the bed?", "options": ["A. sofa", "B. table"]}
    assert sd.spatial_doc_to_text(choice, {**VSI_PROMPTS, "pre_prompt": "These are frames of a video."}) == (
        "These are frames of a video.\nWhich is closest to the bed?\nOptions:\nA. sofa\nB. table\n"
        "Answer with the option's letter from the given choices directly.")
    assert sd.spatial_doc_to_text(numeric, {**VSI_PROMPTS, "na_post_prompt": ""}) == numeric["question"]


def _synth(qtype, answer, prediction):
    rows = sd.synth_process_results({"qtype": qtype, "answers": [answer]}, [prediction])
    assert set(rows) == set(sd.SYNTH_METRICS) and len({id(r) for r in rows.values()}) == 1
    return rows["em"]


def test_synth_scores_by_hand():
    rows = [_synth("counting", "3", "3"), _synth("counting", "3", "2"), _synth("measurement", "4", "5"),
            _synth("colour", "red", "red."), _synth("colour", "red", "blue")]
    assert sd.synth_em(rows) == pytest.approx(100 * 1 / 5)           # "3" and nothing else exactly
    assert sd.synth_em_refined(rows) == pytest.approx(100 * 2 / 5)   # "red." too
    assert sd.synth_em_counting(rows) == pytest.approx(50.0)
    assert sd.synth_em_colour(rows) == 0.0
    assert sd.synth_mra_counting(rows) == pytest.approx((100 + 40) / 2)   # 2 for 3: thresholds .50-.65
    assert sd.synth_mra_measurement(rows) == pytest.approx(60.0)          # 5 for 4: error .25, .50-.75
    assert rows[3]["mra"] is None                                          # no MRA for colours
    assert sd.synth_em_relation(rows) != sd.synth_em_relation(rows)        # NaN: no relation question


def _spatial(qtype, answer, prediction):
    return sd.spatial_process_results({"qtype": qtype, "answers": [answer]}, [prediction])["overall"]


def test_spatial_scores_are_vsibench_s_by_hand():
    rows = [_spatial("object_counting", "3", "2"),                        # MRA 0.4
            _spatial("object_counting", "4", "4"),                        # 1.0  -> counting 70
            _spatial("room_size_estimation", "20.0", "about 23.5"),       # error .175 -> 0.7 (.50-.80)
            _spatial("object_rel_direction_easy", "A", "A. left"),        # 1
            _spatial("object_rel_direction_easy", "B", "left"),           # 0  -> easy 50
            _spatial("object_rel_direction_hard", "C", "C"),              # 1  -> hard 100, medium absent
            _spatial("obj_appearance_order", "D", "(D)")]                 # 0
    assert sd.object_counting_mra(rows) == pytest.approx(70.0)
    assert sd.room_size_estimation_mra(rows) == pytest.approx(70.0)
    assert sd.object_rel_direction_accuracy(rows) == pytest.approx(75.0)  # mean of its levels present
    assert sd.obj_appearance_order_accuracy(rows) == 0.0
    assert sd.object_abs_distance_mra(rows) != sd.object_abs_distance_mra(rows)  # NaN: none asked
    # VSI-Bench's overall: the mean over the types this set has (rel direction once)
    assert sd.spatial_overall(rows) == pytest.approx((70 + 70 + 75 + 0) / 4)


def test_synth_folder_is_data_synth_or_the_environment_s(synth_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(sd.SYNTH_DIR_ENV, raising=False)
    with pytest.raises(DataError, match=r"data/synth: no val.jsonl here .*VQKIT_SYNTH_DIR=DIR"):
        sd.synth_dir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(synth_dir)
    assert sd.synth_dir() == synth_dir.resolve()
    monkeypatch.setenv(sd.SYNTH_DIR_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere: no val.jsonl"):
        sd.synth_dir()
