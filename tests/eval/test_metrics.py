"""vqkit.eval.metrics: hand-checked EM / refined EM and agreement with pycocoevalcap."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest

from vqkit.eval import metrics
from vqkit.eval.metrics import (
    MRA_THRESHOLDS,
    choice_accuracy,
    exact_match,
    int_to_words,
    mean_relative_accuracy,
    mra_score,
    normalize_answer,
    parse_number,
    refined_match,
    score,
    spatial_score,
    sqa3d_label,
    sqa3d_qtype,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")


# --------------------------------------------------------------------------------------------
# Hand-checked cases
# --------------------------------------------------------------------------------------------


def test_int_to_words():
    assert int_to_words(0) == "zero"
    assert int_to_words(3) == "three"
    assert int_to_words(19) == "nineteen"
    assert int_to_words(40) == "forty"
    assert int_to_words(21) == "twenty one"
    assert int_to_words(105) == "one hundred five"
    assert int_to_words(1000) == "one thousand"
    assert int_to_words(2_000_017) == "two million seventeen"


@pytest.mark.parametrize("text, expected", [
    ("The 3 Chairs.", "three chairs"),
    ("a brown chair", "brown chair"),
    ("2.5 m", "two point five m"),
    ("1,000 boxes", "one thousand boxes"),
    ("couch's arm", "couchs arm"),
    ("brown-chair", "brown chair"),
    ("3rd floor", "3rd floor"),          # ordinals and ids are not numbers
    ("room2", "room2"),
    ("  An  ", ""),
    ("...", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_is_the_official_rule():
    refs = ["brown chair", "chair"]
    assert exact_match("chair", refs)
    assert exact_match(" chair\n", refs)            # generation whitespace only
    assert not exact_match("Chair", refs)           # case matters, as in ScanQA's scorer
    assert not exact_match("chair.", refs)
    assert not exact_match("the chair", refs)
    assert not exact_match("", refs)


def test_refined_match():
    assert refined_match("Chair.", ["chair"])                       # case + punctuation
    assert refined_match("3", ["three"])                            # numbers to words
    assert refined_match("three", ["3"])
    assert refined_match("the brown chair", ["a brown chair"])      # articles
    assert refined_match("chair", ["brown chair"])                  # prediction inside reference
    assert refined_match("it is a brown chair by the door", ["brown chair"])  # reference inside
    assert refined_match("x", ["nothing", "X!"])                    # any reference
    assert not refined_match("one", ["phone"])                      # word boundaries only
    assert not refined_match("chair", ["table"])
    assert not refined_match("", ["chair"])                         # empty never matches
    assert not refined_match("the", ["the"])
    assert not refined_match("chair", ["the"])


def test_sqa3d_qtype():
    assert sqa3d_qtype("What is on my left?") == "what"
    assert sqa3d_qtype("  is the door open?") == "is"
    assert sqa3d_qtype("How many chairs are there?") == "how"
    assert sqa3d_qtype("Can I sit on it?") == "can"
    assert sqa3d_qtype("Which way should I go?") == "which"
    assert sqa3d_qtype("Where is the sofa?") == "others"
    assert sqa3d_qtype("") == "others"


@pytest.mark.parametrize("own, question, expected", [
    ("what", "Is the door open?", "what"),           # the record's own type wins over the first word
    ("Others", "What is it?", "others"),             # VG-LLM's label, any case
    ("other", "Where is it?", "others"),             # older vqkit records wrote "other"
    (None, "Which way should I go?", "which"),
    ("", "Am I facing the window?", "others"),
    ("navigation", "Can I sit?", "can"),             # not an SQA3D label: the first word decides
])
def test_sqa3d_label(own, question, expected):
    assert sqa3d_label(own, question) == expected


def test_score_em_and_breakdown_without_language_metrics():
    preds = ["chair", "3", "The table.", "sofa", ""]
    refs = [["chair", "brown chair"], ["three"], ["table"], ["bed"], ["lamp"]]
    qtypes = ["what", "how", "what", None, "is"]
    out = score(preds, refs, qtypes, language=False)
    assert out["n"] == 5
    assert out["em"] == pytest.approx(100 * 1 / 5)                  # only "chair"
    assert out["em_refined"] == pytest.approx(100 * 3 / 5)          # chair, 3, The table.
    for key in metrics.LANGUAGE_METRICS:
        assert out[key] is None
    assert out["by_qtype"] == {
        "how": {"n": 1, "em": 0.0, "em_refined": 100.0},
        "is": {"n": 1, "em": 0.0, "em_refined": 0.0},
        "others": {"n": 1, "em": 0.0, "em_refined": 0.0},
        "what": {"n": 2, "em": 50.0, "em_refined": 100.0},
    }
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------------
# MRA and multiple choice (VSI-Bench), hand-computed
# --------------------------------------------------------------------------------------------


def test_mra_thresholds_are_vsibench_s():
    assert len(MRA_THRESHOLDS) == 10
    assert MRA_THRESHOLDS[0] == 0.5 and MRA_THRESHOLDS[-1] == pytest.approx(0.95)
    assert all(b - a == pytest.approx(0.05) for a, b in itertools.pairwise(MRA_THRESHOLDS))


@pytest.mark.parametrize("prediction, truth, expected", [
    (10.0, 10.0, 1.0),
    (10.4, 10.0, 1.0),     # relative error 0.04 <= 1 - 0.95
    (10.7, 10.0, 0.9),     # 0.07: every threshold up to 0.90
    (12.3, 10.0, 0.6),     # 0.23: 0.50 .. 0.75
    (7.7, 10.0, 0.6),      # the same error below the truth
    (14.9, 10.0, 0.1),     # 0.49: 0.50 only
    (16.0, 10.0, 0.0),     # 0.6 > 1 - 0.50
    (1.0, 3.0, 0.0),       # 0.67
    (2.0, 3.0, 0.4),       # 0.33: 0.50 .. 0.65
    # zero truth: only zero matches (VSI-Bench's formula divides by zero)
    (0.0, 0.0, 1.0),
    (0.1, 0.0, 0.0),
    (-0.1, 0.0, 0.0),
    # negative numbers: the error divides by |truth| (VSI-Bench's / truth would score 1.0 for any prediction)
    (-12.3, -10.0, 0.6),
    (-10.0, -10.0, 1.0),
    (12.3, -10.0, 0.0),
    (-10.0, 10.0, 0.0),
    # no number, or not a finite one
    (None, 3.0, 0.0),
    (float("nan"), 3.0, 0.0),
    (float("inf"), 3.0, 0.0),
])
def test_mean_relative_accuracy_by_hand(prediction, truth, expected):
    assert mean_relative_accuracy(prediction, truth) == pytest.approx(expected)


def test_mra_matches_vsibench_s_code_to_the_bit():
    """Positive truths (where VSI-Bench's formula is defined), including errors on a threshold, score as
    VSI-Bench's own numpy expression does."""
    import numpy as np

    def vsibench(pred, target, start=.5, end=.95, interval=.05):  # VSI-Bench's formula, as its code writes it
        conf = np.linspace(start, end, int((end - start) / interval + 2))
        return (abs(pred - target) / target <= 1 - conf).mean()

    rng = np.random.default_rng(0)
    cases = [(1.1, 1.0), (1.5, 1.0), (0.5, 1.0), (2.5, 2.0), (1.2, 1.0), (3.0, 2.0), (0.95, 1.0)]
    truths, factors = rng.uniform(0.1, 20, 300), rng.uniform(0.3, 1.7, 300)
    cases += [(float(t * f), float(t)) for t, f in zip(truths, factors, strict=True)]
    counts = rng.integers(1, 9, 100)  # integer counts and answers, where errors often fall on a threshold
    cases += [(float(round(c * f)), float(c)) for c, f in zip(counts, factors[:100], strict=True)]
    for pred, truth in cases:
        assert mean_relative_accuracy(pred, truth) == vsibench(pred, truth), (pred, truth)


def test_mra_matches_lmms_eval_s_vsibench():
    vsibench = pytest.importorskip("lmms_eval.tasks.vsibench.utils", reason="lmms-eval is not installed")
    for pred_text, truth in [("3", "3"), ("2 chairs", "3"), ("about 12.3", "10"), ("two", "4"), ("none", "4"),
                             ("1.5", "1"), ("twenty one", "20")]:
        pred = vsibench.extract_number(pred_text)
        expected = 0.0 if pred is None else vsibench.mean_relative_accuracy(pred, float(truth), .5, .95, .05)
        assert mra_score(pred_text, truth) == expected, pred_text


@pytest.mark.parametrize("text, expected", [
    ("3", 3.0), ("3.5 m", 3.5), ("-2", -2.0), ("+4", 4.0), (".5", 0.5), ("1,200 cm", 1200.0), ("3,4", 3.0),
    ("Three chairs.", 3.0), ("twenty-one", 21.0), ("two hundred and five", 205.0), ("a thousand", 1000.0),
    ("one chair, room 2", 1.0), ("room 2, one chair", 2.0), ("about 4 metres", 4.0),
    ("none", None), ("", None), (None, None), ("left", None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_mra_score_parses_prediction_and_references():
    assert mra_score("3", ["3"]) == 1.0
    assert mra_score("three", "3") == 1.0
    assert mra_score("I see 2 chairs", ["3"]) == pytest.approx(0.4)
    assert mra_score("a chair", ["3"]) == 0.0                      # non-numeric prediction
    assert mra_score("", ["3"]) == 0.0
    assert mra_score("4", ["5", "4"]) == 1.0                       # the best reference
    assert mra_score("4", ["many"]) is None                        # no reference states a number


@pytest.mark.parametrize("prediction, expected", [
    ("B", 1.0), ("b", 1.0), ("B.", 1.0), ("B. left", 1.0), (" B\n", 1.0),
    ("(B)", 0.0), ("B)", 0.0), ("left", 0.0), ("A", 0.0), ("", 0.0),
])
def test_choice_accuracy_is_vsibench_s_rule(prediction, expected):
    assert choice_accuracy(prediction, "B") == expected


def test_spatial_score_is_chosen_by_the_question_type():
    assert spatial_score("2", "3", "object_counting") == pytest.approx(0.4)
    assert spatial_score("12.3", "10", "room_size_estimation") == pytest.approx(0.6)
    assert spatial_score("2", "3", "counting") == pytest.approx(0.4)
    assert spatial_score("A.", "A", "obj_appearance_order") == 1.0
    assert spatial_score("3", "C", "object_rel_direction_hard") == 0.0
    assert spatial_score("red", "red", "colour") is None


def test_score_reports_mra_beside_em_for_numeric_types():
    preds = ["3", "2", "5", "red", "4"]
    refs = [["3"], ["3"], ["4"], ["red"], ["many"]]
    out = score(preds, refs, ["counting", "counting", "measurement", "colour", "measurement"], language=False)
    assert out["by_qtype"]["counting"] == {"n": 2, "em": 50.0, "em_refined": 50.0, "mra": pytest.approx(70.0)}
    # 5 for 4: error 0.25, thresholds 0.50 .. 0.75 -> 60; the reference without a number has no MRA
    assert out["by_qtype"]["measurement"]["mra"] == pytest.approx(60.0)
    assert "mra" not in out["by_qtype"]["colour"]
    assert score(["x"], [["many"]], ["counting"], language=False)["by_qtype"]["counting"]["mra"] is None


def test_score_total_miss_and_empty():
    out = score(["sofa", "red"], [["bed"], ["blue", "green"]], language=False)
    assert out["em"] == 0.0 and out["em_refined"] == 0.0 and out["by_qtype"] == {}
    empty = score([], [], language=False)
    assert empty["n"] == 0 and empty["em"] is None
    json.dumps(empty, allow_nan=False)


def test_score_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        score(["a", "b"], [["a"]], language=False)
    with pytest.raises(ValueError, match="non-empty list"):
        score(["a"], [[]], language=False)
    with pytest.raises(ValueError, match="non-empty list"):
        score(["a"], ["a"], language=False)


def test_without_java_language_metrics_are_null_with_a_warning(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="need Java"):
        out = score(["chair"], [["chair"]])
    assert out["em"] == 100.0
    assert all(out[k] is None for k in metrics.LANGUAGE_METRICS)


def test_pycocoevalcap_failure_is_a_warning_not_a_crash(monkeypatch):
    from pycocoevalcap.tokenizer import ptbtokenizer

    def broken(self, captions):
        raise OSError("read-only file system")

    monkeypatch.setattr(ptbtokenizer.PTBTokenizer, "tokenize", broken)
    with pytest.warns(RuntimeWarning, match="PTB tokenizer.*read-only"):
        out = score(["chair"], [["chair"]])
    assert out["em"] == 100.0 and out["bleu1"] is None and out["cider"] is None


# --------------------------------------------------------------------------------------------
# Agreement with pycocoevalcap called directly
# --------------------------------------------------------------------------------------------

PREDS = ["brown chair", "two", "on the table.", "", "it is next to the door", "white", "...",
         "a big black sofa\nnear the window"]
REFS = [["chair", "brown office chair"], ["2", "two"], ["on the table", "table"], ["lamp"],
        ["next to door", "by the door", "near door"], ["white"], ["kitchen"], ["black sofa"]]


def _direct(meteor):
    """pycocoevalcap as ScanQA's scripts/score.py calls it."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": r} for r in refs] for i, refs in enumerate(REFS)}
    res = {i: [{"caption": p.replace("\n", " ")}] for i, p in enumerate(PREDS)}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{n}": 100 * v for n, v in enumerate(bleu, 1)})
    out["meteor"] = 100 * meteor.compute_score(gts, res)[0]
    out["rouge_l"] = 100 * Rouge().compute_score(gts, res)[0]
    out["cider"] = 100 * Cider().compute_score(gts, res)[0]
    return out


@needs_java
@pytest.mark.slow  # METEOR's JVM loads its paraphrase table: 15-45 s on 2 busy cores
@pytest.mark.ci
def test_language_metrics_agree_with_pycocoevalcap():
    ours = score(PREDS, REFS)
    # The METEOR jar takes ~15 s to start on 2 cores, so this compares against the Java process
    # score() started (pycocoevalcap's own Meteor object, called directly); the slow test below
    # starts a fresh one.
    direct = _direct(metrics._meteor())
    for key in metrics.LANGUAGE_METRICS:
        assert ours[key] == pytest.approx(direct[key], abs=1e-9), key
    assert 0 < ours["bleu1"] <= 100 and 0 < ours["cider"]
    # the empty prediction and the punctuation-only one did not break the Java tools
    assert ours["meteor"] is not None


@needs_java
@pytest.mark.slow  # shares the METEOR process with the test above
@pytest.mark.ci
def test_perfect_predictions_score_high():
    refs = [["brown chair"], ["kitchen table"], ["two"], ["white wall"]]
    out = score([r[0] for r in refs], refs)
    assert out["em"] == 100.0 and out["em_refined"] == 100.0
    assert out["bleu1"] == pytest.approx(100.0)
    assert out["rouge_l"] == pytest.approx(100.0)
    assert out["meteor"] > 90


@needs_java
@pytest.mark.slow
def test_language_metrics_agree_with_a_fresh_meteor():
    from pycocoevalcap.meteor.meteor import Meteor

    ours = score(PREDS, REFS)
    direct = _direct(Meteor())
    for key in metrics.LANGUAGE_METRICS:
        assert ours[key] == pytest.approx(direct[key], abs=1e-9), key
