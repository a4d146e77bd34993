"""Answer metrics for 3D question answering (ScanQA, SQA3D, the synthetic rooms).

:func:`score` turns predictions and their reference answers into the numbers papers report, all
multiplied by 100:

- ``em``: EM@1 as the official ScanQA scorer (``scripts/score.py`` of ATR-DBI/ScanQA,
  ``answer in ref_answers``): the prediction string must equal one of the raw references. The
  only normalisation vqkit adds is stripping leading/trailing whitespace from the prediction,
  because a generated answer can carry a space or newline that a classifier's answer vocabulary
  never has; case and punctuation are compared as they are.
- ``em_refined``: lower-case, numbers written as words ("3" -> "three", "2.5" -> "two point five",
  "1,000" -> "one thousand"), punctuation replaced by spaces (apostrophes removed: "couch's" ->
  "couchs"), articles (a/an/the) dropped, whitespace collapsed; then a hit when the two are equal or
  one occurs in the other **on word boundaries** ("chair" matches "brown chair" but "one" does not
  match "phone"). An answer that normalises to nothing ("the", ".") never matches.
- ``bleu1..4``, ``meteor``, ``rouge_l``, ``cider``: pycocoevalcap 1.2 exactly as the ScanQA scorer
  calls it: the Stanford PTB tokenizer (Java) over the prediction and all references, then
  ``Bleu(4)``, ``Meteor()``, ``Rouge()``, ``Cider()`` at corpus level. They need Java; without it
  (or when anything in pycocoevalcap fails) they are ``None`` and a warning says why.

Spatial questions are scored as VSI-Bench scores them, chosen by the question's type
(:func:`spatial_score`):

- numeric answers (:data:`NUMERIC_QTYPES`: counts, distances, sizes; the synthetic ``counting`` and
  ``measurement`` questions too) by **MRA**, VSI-Bench's Mean Relative Accuracy
  (:func:`mean_relative_accuracy`): the share of the thresholds 0.50, 0.55, ..., 0.95 at which the
  relative error ``|prediction - truth| / |truth|`` is at most ``1 - threshold``, computed with the
  same float operations as VSI-Bench's code (so scores agree to the last bit). The number is the first
  one the prediction states, in digits or words (:func:`parse_number`); a prediction without one scores
  0. Where VSI-Bench's formula is undefined vqkit says what it does: a zero truth is matched only by a
  zero prediction, and the relative error divides by ``|truth|``, so negative numbers score like
  positive ones (VSI-Bench's ``/ truth`` would count every prediction for a negative truth as right);
- multiple choice (:data:`CHOICE_QTYPES`) by **accuracy**: the prediction's first word, without a
  trailing full stop, equals the option letter, case aside (:func:`choice_accuracy`).

``score`` reports ``mra`` beside EM for every numeric question type in ``by_qtype``.

SQA3D reports EM by question type with SQA3D's own labels (:data:`SQA3D_QTYPES`: what, is, how, can,
which, others): :func:`sqa3d_label` takes a record's own type when it is one of them, else the
question's first word (:func:`sqa3d_qtype`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections import defaultdict

import numpy as np

LANGUAGE_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
"""Keys of the pycocoevalcap metrics (None when they cannot be computed)."""

SQA3D_QTYPES = ("what", "is", "how", "can", "which", "others")
"""SQA3D's question types as its paper reports them: the question's first word, "others" for the rest."""

NUMERIC_QTYPES = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
                  "counting", "measurement")
"""Question types with a numeric answer, scored by MRA: VSI-Bench's four and the synthetic benchmark's
counts and metres."""

CHOICE_QTYPES = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
                 "object_rel_distance", "route_planning", "obj_appearance_order")
"""VSI-Bench's multiple-choice question types (the answer is an option letter), scored by accuracy."""

MRA_THRESHOLDS = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
"""VSI-Bench's confidence thresholds C = {0.50, 0.55, ..., 0.95}, as its code makes them."""

_ARTICLES = {"a", "an", "the"}
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
# digits with optional thousands separators and an optional decimal part, as a whole token
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\w]|\.\d)")
_PUNCT = re.compile(r"[^\w\s]|_")


# --------------------------------------------------------------------------------------------
# Normalisation and exact match
# --------------------------------------------------------------------------------------------


def int_to_words(n: int) -> str:
    """English words for a non-negative integer: 21 -> "twenty one", 1005 -> "one thousand five"."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + int_to_words(rest))
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return int_to_words(n // value) + " " + name + ("" if rest == 0 else " " + int_to_words(rest))
    raise AssertionError("unreachable")  # pragma: no cover


def _number_words(match: re.Match) -> str:
    whole, frac = match.group(1), match.group(2)
    words = int_to_words(int(whole.replace(",", "")))
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return f" {words} "


def normalize_answer(text: str) -> str:
    """The refined-EM normal form: lower-case, numbers as words, no punctuation, no articles.

    >>> normalize_answer("The 3 Chairs.")
    'three chairs'
    """
    text = text.lower().replace("'", "").replace("\u2019", "")
    text = _NUMBER.sub(_number_words, text)
    text = _PUNCT.sub(" ", text)
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def exact_match(prediction: str, references: list[str]) -> bool:
    """Official ScanQA EM@1: the (whitespace-stripped) prediction is one of the raw references."""
    if isinstance(references, str):
        references = [references]
    return prediction.strip() in references


def refined_match(prediction: str, references: list[str]) -> bool:
    """Refined EM: normalised strings equal, or one inside the other on word boundaries."""
    if isinstance(references, str):
        references = [references]
    pred = normalize_answer(prediction)
    if not pred:
        return False
    for ref in references:
        ref = normalize_answer(ref)
        if ref and (f" {pred} " in f" {ref} " or f" {ref} " in f" {pred} "):
            return True
    return False


def sqa3d_qtype(question: str) -> str:
    """SQA3D question type from the first word: what/is/how/can/which, anything else "others"."""
    words = re.findall(r"[a-z]+", question.lower())
    first = words[0] if words else ""
    return first if first in SQA3D_QTYPES[:-1] else "others"


def sqa3d_label(qtype: str | None, question: str) -> str:
    """The SQA3D label of a question: its record's own type (``qtype`` or ``question_type``) when it is one of
    :data:`SQA3D_QTYPES` (any case; "other", as older vqkit records write it, is "others"), else the
    question's first word (:func:`sqa3d_qtype`)."""
    label = (qtype or "").strip().lower()
    label = "others" if label == "other" else label
    return label if label in SQA3D_QTYPES else sqa3d_qtype(question)


# --------------------------------------------------------------------------------------------
# Spatial answers: MRA and multiple choice (VSI-Bench)
# --------------------------------------------------------------------------------------------

_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_WORD_SCALES = {"hundred": 100, "thousand": 1000}
# digits: an optional sign, thousands separators or plain digits, an optional decimal part
_DIGITS = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-+]?\.\d+")
_WORD = re.compile(r"[a-z]+")


def _words_value(words: list[str]) -> float:
    total, current = 0, 0
    for w in words:
        if w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total, current = total + max(current, 1) * 1000, 0
        else:
            current += _WORD_VALUES[w]
    return float(total + current)


def parse_number(text: str | None) -> float | None:
    """The first number ``text`` states, in digits ("3", "-2.5", "1,200") or English words ("three",
    "twenty-one", "two hundred and five"), whichever comes first; None when it states none.

    >>> parse_number("about 3.5 metres"), parse_number("Three chairs."), parse_number("none")
    (3.5, 3.0, None)
    """
    if text is None:
        return None
    s = str(text).lower()
    digits = _DIGITS.search(s)
    start, words = None, []
    for m in _WORD.finditer(s):
        w = m.group(0)
        if start is None:
            if w in _WORD_VALUES or w in _WORD_SCALES:
                start, words = m.start(), [w]
        elif w in _WORD_VALUES or w in _WORD_SCALES:
            words.append(w)
        elif w != "and":
            break
    if digits is not None and (start is None or digits.start() < start):
        return float(digits.group(0).replace(",", ""))
    return _words_value(words) if words else None


def mean_relative_accuracy(prediction: float | None, truth: float) -> float:
    """VSI-Bench's MRA of one numeric answer, in [0, 1]: the share of :data:`MRA_THRESHOLDS` θ at which
    ``|prediction - truth| / |truth| <= 1 - θ``.

    A missing or non-finite prediction scores 0. A zero truth is matched by a zero prediction only (1.0,
    else 0.0). Negative numbers divide by ``|truth|``: -2 for -2.5 is a relative error of 0.2, as 2 for
    2.5 (0.7).
    """
    if prediction is None or not math.isfinite(prediction):
        return 0.0
    if not math.isfinite(truth):
        raise ValueError(f"MRA needs a finite truth, got {truth}")
    if truth == 0:
        error = 0.0 if prediction == 0 else math.inf
    else:
        error = abs(prediction - truth) / abs(truth)
    return sum(error <= 1 - t for t in MRA_THRESHOLDS) / len(MRA_THRESHOLDS)


def mra_score(prediction: str, references: list[str] | str) -> float | None:
    """MRA of a generated answer against its references (the best over references that state a number;
    None when none does)."""
    if isinstance(references, str):
        references = [references]
    value = parse_number(prediction)
    scores = [mean_relative_accuracy(value, truth) for truth in map(parse_number, references) if truth is not None]
    return max(scores) if scores else None


def choice_accuracy(prediction: str, letter: str) -> float:
    """VSI-Bench's multiple-choice rule: 1.0 when the prediction's first word, without a trailing full stop,
    is the option ``letter`` (case aside), else 0.0. "B", "b.", "B. left" score; "(B)" and "left" do not."""
    first = prediction.strip().split(" ")[0].rstrip(".").strip()
    return 1.0 if first.lower() == letter.strip().lower() else 0.0


def spatial_score(prediction: str, answer: str, qtype: str | None) -> float | None:
    """One answer scored as VSI-Bench scores its question type: MRA for :data:`NUMERIC_QTYPES`, accuracy
    for :data:`CHOICE_QTYPES` (both in [0, 1]); None for any other type (score those by EM)."""
    if qtype in NUMERIC_QTYPES:
        return mra_score(prediction, answer)
    if qtype in CHOICE_QTYPES:
        return choice_accuracy(prediction, answer)
    return None


# --------------------------------------------------------------------------------------------
# pycocoevalcap
# --------------------------------------------------------------------------------------------

_METEOR = None  # one METEOR Java process per Python process: it takes seconds to load
_METEOR_LOCK = threading.Lock()


def _meteor():
    """The shared pycocoevalcap ``Meteor`` scorer (started on first use)."""
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is None or _METEOR.meteor_p.poll() is not None:
            from pycocoevalcap.meteor.meteor import Meteor

            _METEOR = Meteor()
        return _METEOR


def _drop_meteor() -> None:
    """Forget a METEOR process that failed, releasing its lock so its __del__ cannot deadlock."""
    global _METEOR
    with _METEOR_LOCK:
        meteor, _METEOR = _METEOR, None
    if meteor is not None:
        if meteor.lock.locked():
            meteor.lock.release()
        try:
            meteor.meteor_p.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass


@contextlib.contextmanager
def _java_stderr():
    """Collect what child processes write to stderr (the PTB tokenizer's Java prints a progress line
    per call) instead of letting it interleave with the results; yields a list that receives it."""
    captured: list[str] = []
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. some notebook kernels)
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


def _one_line(text: str) -> str:
    # The PTB tokenizer reads one sentence per line, so every line break becomes a space.
    return re.sub(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]", " ", text)


def language_metrics(predictions: list[str], references: list[list[str]]) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (x100) as the ScanQA scorer computes them.

    Returns every key of :data:`LANGUAGE_METRICS`; all are None (with a ``warnings.warn`` naming
    the reason) when Java is missing or pycocoevalcap fails, so scoring never crashes on them.
    """
    empty = {k: None for k in LANGUAGE_METRICS}
    if not predictions:
        return empty
    if shutil.which("java") is None:
        warnings.warn("BLEU/METEOR/ROUGE-L/CIDEr not computed: pycocoevalcap's PTB tokenizer and "
                      "METEOR need Java and no 'java' is on PATH (e.g. apt-get install "
                      "default-jre-headless); they are reported as null", RuntimeWarning, stacklevel=2)
        return empty
    step = "import"
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        step = "PTB tokenizer"
        gts = {i: [{"caption": _one_line(r)} for r in refs] for i, refs in enumerate(references)}
        res = {i: [{"caption": _one_line(p)}] for i, p in enumerate(predictions)}
        tokenizer = PTBTokenizer()
        with _java_stderr() as java_err:
            gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
        if len(gts) != len(references) or len(res) != len(predictions):
            last = " ".join("".join(java_err).split())[-300:]
            raise RuntimeError(f"PTB tokenizer returned {len(res)}/{len(gts)} of "
                               f"{len(predictions)} sentences; Java said: {last or 'nothing'}")
        out = {}
        step = "BLEU"
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for n, value in enumerate(bleu, start=1):
            out[f"bleu{n}"] = float(100.0 * value)
        step = "METEOR"
        try:
            out["meteor"] = float(100.0 * _meteor().compute_score(gts, res)[0])
        except BaseException:
            _drop_meteor()
            raise
        step = "ROUGE-L"
        out["rouge_l"] = float(100.0 * Rouge().compute_score(gts, res)[0])
        step = "CIDEr"
        out["cider"] = float(100.0 * Cider().compute_score(gts, res)[0])
        return out
    except Exception as e:  # noqa: BLE001 - any failure of the Java tools must not lose the EM numbers
        warnings.warn(f"BLEU/METEOR/ROUGE-L/CIDEr not computed: pycocoevalcap failed in {step} "
                      f"({type(e).__name__}: {e}); they are reported as null",
                      RuntimeWarning, stacklevel=2)
        return empty


# --------------------------------------------------------------------------------------------
# score
# --------------------------------------------------------------------------------------------


def _mean100(values: list[bool]) -> float | None:
    # None rather than NaN for an empty set, so metrics.json stays valid JSON
    return 100.0 * sum(values) / len(values) if values else None


def score(predictions: list[str], references: list[list[str]], qtypes: list[str | None] | None = None,
          *, language: bool = True) -> dict:
    """Score predictions against their references; every value x100.

    Args:
        predictions: one answer string per example.
        references: all reference answers of each example (at least one).
        qtypes: question type per example for ``by_qtype`` (None: no breakdown; a None entry
            counts as "others"). Use :func:`sqa3d_qtype` for records without one.
        language: compute BLEU/METEOR/ROUGE-L/CIDEr (needs Java, a few seconds); False leaves
            them None without a warning (e.g. for quick periodic evaluation in training).

    Returns:
        ``{"n", "em", "em_refined", "bleu1".."bleu4", "meteor", "rouge_l", "cider",
        "by_qtype": {qtype: {"n", "em", "em_refined"}}}``, and ``mra`` (x100, :func:`mra_score`) beside
        EM for each of :data:`NUMERIC_QTYPES` (None when no reference of the type states a number).
        With no examples the rates are None.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if qtypes is not None and len(qtypes) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(qtypes)} qtypes")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"example {i}: references must be a non-empty list of strings, got {refs!r}")

    em = [exact_match(p, r) for p, r in zip(predictions, references, strict=True)]
    refined = [refined_match(p, r) for p, r in zip(predictions, references, strict=True)]
    out: dict = {"n": len(predictions), "em": _mean100(em), "em_refined": _mean100(refined)}
    if language:
        out.update(language_metrics(predictions, references))
    else:
        out.update({k: None for k in LANGUAGE_METRICS})

    by_qtype: dict[str, dict] = {}
    if qtypes is not None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, qt in enumerate(qtypes):
            groups[qt or "others"].append(i)
        for qt in sorted(groups):
            idx = groups[qt]
            by_qtype[qt] = {"n": len(idx), "em": _mean100([em[i] for i in idx]),
                            "em_refined": _mean100([refined[i] for i in idx])}
            if qt in NUMERIC_QTYPES:
                mra = [m for m in (mra_score(predictions[i], references[i]) for i in idx) if m is not None]
                by_qtype[qt]["mra"] = 100.0 * sum(mra) / len(mra) if mra else None
    out["by_qtype"] = by_qtype
    return out
