"""Conversation files (LLaVA / Qwen-VL-finetune) read as records: every layout, the geometry of posed_images
folders, multi-turn samples in training and evaluation, and one test per bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conversation_fixtures import gpt, human, photos, posed_scan, write_frame_folder, write_json, write_video_file

from vqkit.config import config_from_dict
from vqkit.data.collate import Collator
from vqkit.data.dataset import build_dataset
from vqkit.data.schema import LoadReport, load_records
from vqkit.errors import DataError


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Photos, a 32-frame posed_images scan, a video file and a folder of frames under one root."""
    root = tmp_path_factory.mktemp("media")
    return {"root": root, "photos": photos(root, 4), "scan": posed_scan(root, frames=32),
            "video": write_video_file(root / "videos" / "clip.mp4", n=12),
            "folder": write_frame_folder(root / "videos" / "clip_frames", n=10)}


def _load(media, samples, **kw):
    path = write_json(media["root"] / kw.pop("name", "conv.json"), samples, jsonl=kw.pop("jsonl", False))
    return load_records(str(path), **kw)


def test_single_image_qwen_vl_sample(media):
    sample = {"id": "coco-1", "image": media["photos"][0],
              "conversations": [human("<image>\nWhat is in the picture?"), gpt("a red chair")]}
    [rec] = _load(media, [sample], jsonl=True, name="single.jsonl")
    assert rec.images == [str(media["root"] / media["photos"][0])]
    assert rec.question == "What is in the picture?" and rec.vision_at == 0  # the views before the text
    assert rec.answer == "a red chair" and rec.id == "coco-1"
    assert rec.turn is None and rec.conversation is None and rec.geometry is None


def test_views_after_the_question_take_the_template_place(media):
    sample = {"image": [media["photos"][1]], "conversations": [human("How many chairs?\n<image>"), gpt("two")]}
    [rec] = _load(media, [sample])
    assert rec.question == "How many chairs?" and rec.vision_at is None


def test_32_frame_posed_images_sample_reads_poses_intrinsics_and_depth(media):
    scan = media["scan"]
    sample = {"id": "sqa-7", "images": scan["frames"], "scene_id": "scene0000_00",
              "conversations": [human("<image>" * 32 + "\nWhere is the door?"), gpt("left")]}
    [rec] = _load(media, [sample])
    assert rec.num_views == 32 and rec.geometry is not None
    scene = scan["scene"]
    for i in (0, 13, 31):
        R, t = scene.w2c(i)
        np.testing.assert_allclose(rec.geometry.R[i], R, atol=1e-6)
        np.testing.assert_allclose(rec.geometry.t[i], t, atol=1e-5)
    np.testing.assert_allclose(rec.geometry.K[5], scan["K_color"], atol=1e-4)
    assert rec.geometry.depth_hist.shape == (32, 16) and np.allclose(rec.geometry.depth_hist.sum(1), 1, atol=1e-5)
    assert rec.depths[3].endswith("posed_images/scene0000_00/00003.png")


def test_multi_turn_messages_with_system(media):
    sample = {"id": 17, "images": media["photos"][:2], "question_type": "what", "situation": "I sit on the bed.",
              "answers": [["red", "dark red"], ["two"], ["yes"]],
              "messages": [{"role": "system", "content": "Answer in one word."},
                           {"role": "user", "content": "<image><image>What colour is the sofa?"},
                           {"role": "assistant", "content": "red"},
                           {"role": "user", "content": "How many lamps?"},
                           {"role": "assistant", "content": "two"},
                           {"role": "user", "content": "Is there a bed?"},
                           {"role": "assistant", "content": "yes"}],
              "data_source": "llava"}
    recs = _load(media, [sample], name="multi.json")
    assert [r.turn for r in recs] == [1, 2, 3]
    assert len({r.conversation for r in recs}) == 1 and recs[0].conversation.startswith("multi:")
    assert [r.question for r in recs] == ["What colour is the sofa?", "How many lamps?", "Is there a bed?"]
    assert recs[0].vision_at == 0 and recs[1].vision_at is None
    assert all(r.system == "Answer in one word." and r.id == "17" and r.qtype == "what" for r in recs)
    assert recs[0].answers == ["red", "dark red"] and recs[2].answers == ["yes"]
    assert recs[0].situation == "I sit on the bed." and recs[0].extra == {"data_source": "llava"}
    assert recs[0].meta()["turn"] == 1


def _cfg(path, **data):
    return config_from_dict({"data": {"train": [{"path": str(path)}], "num_views": 2, "image_size": 28,
                                      "prompt_template": "{question}\n<image>\n{answer}", **data}})


def test_a_conversation_trains_as_one_sample_and_evaluates_per_turn(media, tiny_tokenizer):
    samples = [{"images": media["photos"][:2], "conversations": [
        human("<image>\n<image>\nWhat colour is the sofa?"), gpt("red"), human("How many lamps?"), gpt("two"),
        human("Is there a bed?"), gpt("yes")]},
        {"image": media["photos"][2], "conversations": [human("Is there a chair?\n<image>"), gpt("no")]}]
    path = write_json(media["root"] / "train_conv.json", samples)
    cfg = _cfg(path)
    train = build_dataset(cfg.data, "train", sources=cfg.data.train)
    assert len(train) == 2  # the 3-turn conversation is one sample
    sample = train[0]
    assert sample["question"] == "What colour is the sofa?" and sample["vision_at"] == 0
    assert [t["question"] for t in sample["turns"]] == ["How many lamps?", "Is there a bed?"]
    batch = Collator(tiny_tokenizer, cfg.model, cfg.data)([sample, train[1]])
    assert int(batch["turn_of"][0].max()) == 3  # every assistant turn a target, masked from the others
    labelled = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert tiny_tokenizer.decode(labelled).count("two") == 1
    val = build_dataset(cfg.data, "val", sources=cfg.data.train)
    assert len(val) == 4 and [val[i]["meta"].get("turn") for i in range(4)] == [1, 2, 3, None]


def test_views_go_where_the_placeholder_stands(media, tiny_tokenizer):
    cfg = _cfg(media["root"] / "unused.json")
    collate = Collator(tiny_tokenizer, cfg.model, cfg.data, mode="generate")
    vision = collate.vision
    tok = tiny_tokenizer

    def text_around_views(question, vision_at):
        ids = collate.encode_sample(question, None, None, 2, False, (28, 28), vision_at=vision_at)["input_ids"]
        start = ids.index(vision.start_id)
        end = ids.index(vision.end_id)
        return tok.decode(ids[:start]).strip(), tok.decode(ids[end + 1:]).strip()

    assert text_around_views("Is there a bed?", None) == ("Is there a bed?", "")
    assert text_around_views("Is there a bed?", 0) == ("", "Is there a bed?")
    assert text_around_views("Look here.\nIs there a bed?", len("Look here.")) == ("Look here.", "Is there a bed?")


def test_video_file_and_folder_of_frames(media):
    question = [human("<video>\nWhat moves?"), gpt("a bar")]
    samples = [{"id": "v1", "video": "videos/clip.mp4", "conversations": question},
               {"id": "v2", "video": "videos/clip_frames", "conversations": question}]
    file_rec, folder_rec = _load(media, samples, video_frames=8)
    assert file_rec.num_views == 8 and file_rec.images[0].endswith("clip.mp4#frame=0")
    assert file_rec.images[-1].endswith("clip.mp4#frame=11") and file_rec.geometry is None
    assert folder_rec.num_views == 8 and folder_rec.images[0].endswith("clip_frames/frame_1.jpg")
    assert folder_rec.images[-1].endswith("frame_10.jpg")  # sorted as numbers, not as text
    cfg = _cfg(media["root"] / "conv.json", num_views=4, video_frames=8)
    val = build_dataset(cfg.data, "val", sources=cfg.data.train)
    sample = val[0]
    assert sample["images"].shape[0] == 4 and sample["meta"]["views"] == [0, 2, 5, 7]


def test_extra_fields_reach_the_predictions_metrics(media):
    sample = {"qid": "q-5", "question_type": 3, "scene_id": "scene0000_00", "image": media["photos"][0],
              "conversations": [human("<image>\nI face the door. What is on my left?"), gpt("table")],
              "situation": "I face the door."}
    [rec] = _load(media, [sample])
    assert rec.id == "q-5" and rec.qtype == "3" and rec.scene_id == "scene0000_00"
    assert rec.prompt_situation is None  # already in the question: not placed twice
    assert rec.meta()["situation"] == "I face the door."


def test_content_decides_the_format_unless_declared(media):
    conv = write_json(media["root"] / "mixed.jsonl", [
        {"images": [media["photos"][0]], "question": "Is there a bed?", "answer": "yes"},
        {"image": media["photos"][1], "conversations": [human("<image>\nIs there a bed?"), gpt("no")]}], jsonl=True)
    assert [r.answer for r in load_records(str(conv))] == ["yes", "no"]
    with pytest.raises(DataError, match=r"mixed.jsonl:1: field 'conversations': missing \(the source's format"):
        load_records(str(conv), format="conversations")
    with pytest.raises(DataError, match=r"mixed.jsonl:2: field 'images': missing"):
        load_records(str(conv), format="records")


def test_config_declares_format_image_root_and_rate(media, tmp_path):
    samples = [{"image": p, "conversations": [human("<image>\nWhat is it?"), gpt("a chair")]} for p in media["photos"]]
    path = write_json(tmp_path / "elsewhere" / "llava.json", samples)
    cfg = config_from_dict({"data": {"train": [{"path": f"{path}%50", "format": "conversations",
                                                "image_root": str(media["root"])}],
                                     "num_views": 2, "image_size": 28}})
    src = cfg.data.train[0]
    assert (src.path, src.rate) == (str(path), 50.0)
    train = build_dataset(cfg.data, "train", sources=cfg.data.train)
    assert len(train) == 2  # half of the 4 samples an epoch


# ---------------------------------------------------------------------------------------------- bad input

def _bad(media, sample, match, **kw):
    with pytest.raises(DataError, match=match) as info:
        _load(media, [sample], name="bad.json", **kw)
    assert "\n" not in str(info.value)


def test_placeholder_count_must_match_the_media(media):
    _bad(media, {"images": media["photos"][:3], "conversations": [human("<image><image>\nHow many?"), gpt("2")]},
         r"bad.json:2: field 'conversations\[0\].value': 2 <image>/<video> placeholders for 3 images")
    _bad(media, {"video": "videos/clip.mp4", "conversations": [human("What moves?"), gpt("bar")]},
         r"0 <image>/<video> placeholders for 1 video")


def test_missing_frame(media):
    frames = list(media["scan"]["frames"])
    frames[4] = "posed_images/scene0000_00/09999.jpg"
    _bad(media, {"images": frames, "conversations": [human("<image>" * 32 + "Where?"), gpt("here")]},
         r"bad.json:2: field 'images\[4\]': file not found: .*09999.jpg")


def test_video_that_cannot_be_decoded(media):
    broken = media["root"] / "videos" / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    _bad(media, {"video": "videos/broken.mp4", "conversations": [human("<video>What?"), gpt("x")]},
         r"bad.json:2: field 'video': .*broken.mp4: cannot decode the video")


def test_unknown_role_and_turn_without_text(media):
    base = {"image": media["photos"][0]}
    _bad(media, {**base, "conversations": [human("<image>Hi?"), {"from": "bot", "value": "x"}]},
         r"field 'conversations\[1\].from': unknown role 'bot'")
    _bad(media, {**base, "messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}]},
         r"field 'messages\[0\].content': the turn has no text")
    _bad(media, {**base, "conversations": [human("<image>What?"), gpt("  ")]},
         r"field 'conversations\[1\].value': the turn has no text")
    _bad(media, {**base, "conversations": [human("<image>What?"), gpt("a"), human("And?")]},
         r"field 'conversations\[2\]': the last user turn has no assistant answer")


def test_pose_that_is_not_a_rigid_4x4(media, tmp_path):
    scan = posed_scan(tmp_path, "scene0001_00", frames=3)
    (scan["folder"] / "00001.txt").write_text("1 0 0 0\n0 2 0 0\n0 0 1 0\n0 0 0 1\n")
    (scan["folder"] / "00002.txt").write_text("-inf " * 16)
    sample = {"images": scan["frames"][:2], "conversations": [human("<image><image>Where?"), gpt("here")]}
    path = write_json(tmp_path / "bad.json", [sample])
    with pytest.raises(DataError, match=r"bad.json:2: field 'images\[1\]': .*00001.txt: not a rigid 4x4"):
        load_records(str(path))
    sample["images"] = [scan["frames"][0], scan["frames"][2]]
    write_json(path, [sample])
    with pytest.raises(DataError, match=r"field 'images\[1\]': .*00002.txt: not a rigid 4x4"):
        load_records(str(path))


def test_skip_counts_bad_samples(media):
    good = {"image": media["photos"][0], "conversations": [human("<image>What?"), gpt("chair"),
                                                         human("Colour?"), gpt("red")]}
    bad = {"image": media["photos"][0], "conversations": [human("What?"), gpt("chair")]}
    report = LoadReport()
    recs = _load(media, [good, bad, bad, good], name="some_bad.jsonl", jsonl=True, on_error="skip", report=report)
    assert len(recs) == 4 and report.num_skipped == 2 and report.num_conversations == 2
    assert "some_bad.jsonl:2: field 'conversations[0].value': 0 <image>/<video> placeholders" in report.errors[0]
    assert "from 2 conversation samples, 2 skipped" in report.summary()


def test_turn_fields_of_records_are_checked(media):
    rec = {"images": [media["photos"][0]], "question": "What?", "answer": "x", "turn": 0, "conversation": "a"}
    path = write_json(media["root"] / "turns.jsonl", [rec], jsonl=True)
    with pytest.raises(DataError, match=r"turns.jsonl:1: field 'turn': expected the assistant turn's number"):
        load_records(str(path))
    path.write_text(json.dumps({**rec, "turn": 1, "question": "<image> a <image>"}) + "\n")
    with pytest.raises(DataError, match=r"field 'question': more than one <image>"):
        load_records(str(path))


def test_a_frame_without_its_pose_beside_posed_ones(media, tmp_path):
    scan = posed_scan(tmp_path, "scene0003_00", frames=3)
    (scan["folder"] / "00000.txt").unlink()
    sample = {"images": scan["frames"], "conversations": [human("<image><image><image>Where?"), gpt("here")]}
    path = write_json(tmp_path / "bad.json", [sample])
    with pytest.raises(DataError, match=r"field 'images\[0\]': no camera pose 00000.txt beside it, while images\[1\]"):
        load_records(str(path))
