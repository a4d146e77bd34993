"""vqkit.eval.harness: questions asked as a harness asks them (text, views, cameras) get the answers
``vqkit eval`` gives the same records; generation options and their checks."""

from __future__ import annotations

import pytest
from PIL import Image

from vqkit.data.schema import load_records
from vqkit.errors import ConfigError
from vqkit.eval.generate import evaluate
from vqkit.eval.harness import HarnessQuestion, answer_questions, generation_options, harness_sample


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from vqkit.models.builder import load_model

    return load_model(tiny_model_dir, device="cpu")


def _questions(records, decoded: bool = False):
    return [HarnessQuestion(text=f"{r.situation} {r.question}" if r.situation else r.question,
                            views=[Image.open(p) for p in r.images] if decoded else r.images, geometry=r.geometry)
            for r in records]


@pytest.mark.parametrize("decoded", [False, True], ids=["paths", "decoded images"])
def test_answers_are_vqkit_eval_s(model, eval_records, decoded):
    rows, _ = evaluate(model, data=str(eval_records), language=False, progress=False)
    records = load_records(str(eval_records), depth_bins=model.config.model.geometry.depth_bins)
    assert any(r.geometry is not None for r in records) and any(r.situation for r in records)
    answers = answer_questions(model, _questions(records, decoded), batch_size=model.config.eval.batch_size)
    assert answers == [r["prediction"] for r in rows]


def test_a_question_is_preprocessed_as_a_record(model, eval_records):
    from vqkit.eval.generate import build_eval_dataset

    cfg = model.config
    record = load_records(str(eval_records), depth_bins=cfg.model.geometry.depth_bins)[0]
    want = build_eval_dataset(cfg, str(eval_records))[0]
    got = harness_sample(cfg, _questions([record], decoded=True)[0])
    for key in ("images", "K", "R", "t", "depth_hist", "pixel_box"):
        assert got[key].equal(want[key]), key
    assert got["has_geometry"] and got["question"] == want["question"]


def test_generation_options():
    from vqkit.config import config_from_dict

    cfg = config_from_dict({"eval": {"max_new_tokens": 7}})
    greedy = generation_options(cfg, None)
    assert (greedy.max_new_tokens, greedy.kwargs, greedy.stop) == (7, {"do_sample": False}, ())
    g = generation_options(cfg, {"max_new_tokens": 16, "temperature": 0, "top_p": 1.0, "num_beams": 1,
                                 "do_sample": False, "until": ["\n\n"]})
    assert (g.max_new_tokens, g.kwargs, g.stop) == (16, {"do_sample": False}, ("\n\n",))
    g = generation_options(cfg, {"temperature": 0.7, "top_p": 0.9, "until": "."})
    assert g.kwargs == {"do_sample": True, "temperature": 0.7, "top_p": 0.9} and g.stop == (".",)
    assert generation_options(cfg, {"num_beams": 3}).kwargs == {"do_sample": False, "num_beams": 3}
    with pytest.raises(ConfigError, match="max_new_tokens must be >= 1"):
        generation_options(cfg, {"max_new_tokens": -1})


def test_stop_strings_cut_the_answer(model, eval_records):
    records = load_records(str(eval_records), depth_bins=model.config.model.geometry.depth_bins)[:2]
    full = answer_questions(model, _questions(records), generation_options(model.config, {"max_new_tokens": 6}))
    assert any(len(a) > 1 for a in full)
    first = next(a for a in full if len(a) > 1)
    cut = answer_questions(model, _questions(records), generation_options(
        model.config, {"max_new_tokens": 6, "until": [first[1]]}))
    assert cut == [a.split(first[1], 1)[0] for a in full]


def test_bad_questions_are_one_line_errors(model, eval_records):
    record = load_records(str(eval_records), depth_bins=model.config.model.geometry.depth_bins)[0]
    with pytest.raises(ConfigError, match="at least one view"):
        answer_questions(model, [HarnessQuestion("q?", [])])
    with pytest.raises(ConfigError, match="1 views but cameras for 2"):
        answer_questions(model, [HarnessQuestion("q?", record.images[:1], record.geometry)])
    with pytest.raises(ConfigError, match="batch size"):
        answer_questions(model, [HarnessQuestion("q?", record.images)], batch_size=0)


def test_geometry_source_without_cameras(tiny_vggt_file, tmp_path):
    """Cameras the harness gives are used unless the heads are asked for; without them the encoder's VGGT
    heads predict the geometry when ``model.geometry.source`` allows it and the weights hold heads."""
    from vqkit.config import config_from_dict
    from vqkit.eval.harness import geometry_source

    def cfg(source, weights=str(tiny_vggt_file)):
        return config_from_dict({"model": {"encoder": {"weights": weights}, "geometry": {"source": source}}})

    assert [geometry_source(cfg("records"), given) for given in (True, False)] == ["records", "records"]
    assert [geometry_source(cfg("auto"), given) for given in (True, False)] == ["records", "heads"]
    assert [geometry_source(cfg("heads"), given) for given in (True, False)] == ["heads", "heads"]
    assert geometry_source(cfg("auto", weights=None), False) == "records"   # no heads to ask
    with pytest.raises(ConfigError, match="source is heads but the geometry cannot be predicted"):
        geometry_source(cfg("heads", weights=None), False)
