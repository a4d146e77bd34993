"""Questions from evaluation harnesses (lmms-eval, :mod:`vqkit.lmms`): a prompt text, its views and, when
the harness has them, the views' cameras -> the model's answers, in batches.

A question goes through what ``vqkit eval`` does to a record: its views become a
:class:`~vqkit.data.schema.Record` read by :class:`~vqkit.data.dataset.RecordDataset` in evaluation mode
(VGGT's preprocessing, ``data.num_views`` chosen evenly when more are given, K adjusted), the prompt is the
collator's (the harness's text in the ``{question}`` slot) and generation is the model's. So a synthetic
record asked through a harness with its own text, views and cameras gets the answer ``vqkit eval`` gives.

Views are image paths, decoded images (PIL, what most lmms-eval tasks hand over) or video frame references
(``clip.mp4#frame=12``, :mod:`vqkit.data.video`). Cameras (:class:`~vqkit.data.schema.Geometry`, one per
view as given) feed the geometry tokens; without them a model with a geometry encoder answers from its
projector's tokens only, unless ``model.geometry.source`` is ``heads`` or ``auto`` and the encoder's VGGT
heads can predict them (as for ``vqkit ask``).

Generation follows the harness's options (:func:`generation_options`): its budget, greedy unless it asks
for sampling, and its stop strings cut the answer.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vqkit.data.collate import Collator
from vqkit.data.dataset import RecordDataset
from vqkit.data.schema import Geometry, Record
from vqkit.errors import ConfigError
from vqkit.eval.generate import generation_kwargs, unwrap_model

log = logging.getLogger("vqkit.eval")


@dataclass
class HarnessQuestion:
    """One question as a harness asks it."""

    text: str
    """The whole prompt text (question, options, instructions), in the ``{question}`` slot of the prompt."""
    views: Sequence[Any]
    """Image paths, decoded PIL images or video frame references, in order."""
    geometry: Geometry | None = None
    """The cameras of ``views`` (one per view), or None."""


@dataclass
class Generation:
    """How to generate the answers of one harness request."""

    max_new_tokens: int
    kwargs: dict[str, Any]
    stop: tuple[str, ...] = ()


def generation_options(cfg, options: dict | None) -> Generation:
    """The generation of a harness's options (lmms-eval's ``generation_kwargs``): ``max_new_tokens``
    (default ``eval.max_new_tokens``), sampling when ``do_sample`` or a ``temperature`` above 0 asks for it
    (with ``top_p``), ``num_beams``, and ``until``: strings that end the answer. Without options: greedy, as
    ``vqkit eval`` (``cfg.eval``)."""
    options = dict(options or {})
    budget = int(options.get("max_new_tokens") or cfg.eval.max_new_tokens)
    if budget < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {budget}")
    kwargs = generation_kwargs(cfg)
    temperature = options.get("temperature")
    sample = options.get("do_sample")
    if sample is None and temperature is not None:
        sample = float(temperature) > 0
    if sample is not None:
        kwargs = {"do_sample": bool(sample)}
        if sample:
            kwargs["temperature"] = float(temperature) if temperature else 1.0
            if options.get("top_p") is not None:
                kwargs["top_p"] = float(options["top_p"])
    if options.get("num_beams") and int(options["num_beams"]) > 1:
        kwargs["num_beams"] = int(options["num_beams"])
    until = options.get("until") or ()
    stop = (until,) if isinstance(until, str) else tuple(s for s in until if s)
    return Generation(budget, kwargs, stop)


def geometry_source(cfg, has_geometry: bool) -> str:
    """The ``model.geometry.source`` a question is answered with: ``heads`` when the encoder's VGGT heads
    predict its cameras (``model.geometry.source`` heads, or auto without given cameras, and heads that
    exist), else ``records`` (the given cameras, or none)."""
    geo = cfg.model.geometry
    if not geo.enabled or geo.source == "records" or (geo.source == "auto" and has_geometry):
        return "records"
    from vqkit.vggt.predictor import geometry_heads_available

    available, why = geometry_heads_available(cfg.model.encoder)
    if available:
        return "heads"
    if geo.source == "heads":
        raise ConfigError(f"model.geometry.source is heads but the geometry cannot be predicted: {why}")
    return "records"


def harness_sample(cfg, question: HarnessQuestion) -> dict:
    """The evaluation-mode dataset sample of one question (views chosen, loaded and preprocessed)."""
    if not question.views:
        raise ConfigError("a harness question needs at least one view (image or video frame)")
    if question.geometry is not None and len(question.geometry.R) != len(question.views):
        raise ConfigError(f"{len(question.views)} views but cameras for {len(question.geometry.R)}")
    record = Record(images=list(question.views), question=question.text, answer="", id="harness", task="harness",
                    source="harness", geometry=question.geometry)
    dataset = RecordDataset([record], cfg.data, train=False, seed=cfg.train.seed,
                            depth_bins=cfg.model.geometry.depth_bins, max_depth=cfg.model.geometry.max_depth,
                            name="harness")
    return dataset[0]


def _cut(text: str, stop: Sequence[str]) -> str:
    for s in stop:
        text = text.split(s, 1)[0]
    return text


def answer_questions(model, questions: Sequence[HarnessQuestion], generation: Generation | None = None, *,
                     batch_size: int = 1, blind: bool = False, cfg=None) -> list[str]:
    """The model's answers to ``questions``, in order, ``batch_size`` at a time (the batches keep the
    questions' order, so the same questions batched as ``vqkit eval`` batches its records give its answers).
    ``blind``: no vision or geometry tokens (a model trained blind, ``data.blind``, is always asked blind)."""
    core = unwrap_model(model)
    cfg = cfg if cfg is not None else core.config
    generation = generation or generation_options(cfg, None)
    blind = blind or cfg.data.blind
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    # The geometry source of a question with and without cameras (the heads' weights file is read once).
    source_of = {given: "records" if blind else geometry_source(cfg, given) for given in (False, True)}
    answers: list[str] = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        sources = [source_of[q.geometry is not None] for q in chunk]
        texts: dict[int, str] = {}
        for source in sorted(set(sources)):
            part = [i for i, s in enumerate(sources) if s == source]
            run_cfg = copy.deepcopy(cfg)
            run_cfg.model.geometry.source = source
            collator = Collator(core.tokenizer, run_cfg.model, run_cfg.data, mode="generate", blind=blind)
            batch = collator([harness_sample(cfg, chunk[i]) for i in part])
            for i, text in zip(part, core.generate(batch, max_new_tokens=generation.max_new_tokens,
                                                   **generation.kwargs), strict=True):
                texts[i] = _cut(text, generation.stop)
        answers += [texts[i] for i in range(len(chunk))]
    return answers
