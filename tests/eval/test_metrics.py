"""vqkit.eval.metrics: hand-checked EM / refined EM and agreement with pycocoevalcap."""

from __future__ import annotations

import json
import shutil

import pytest

from vqkit.eval import metrics
from vqkit.eval.metrics import (
    exact_match,
    int_to_words,
    normalize_answer,
    refined_match,
    score,
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
    assert sqa3d_qtype("Where is the sofa?") == "other"
    assert sqa3d_qtype("") == "other"


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
        "other": {"n": 1, "em": 0.0, "em_refined": 0.0},
        "what": {"n": 2, "em": 50.0, "em_refined": 100.0},
    }
    json.dumps(out, allow_nan=False)


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
