"""Conversation files read as records: the LLaVA / Qwen-VL-finetune layout the field releases its data in.

A *conversation sample* is one JSON object (a JSON array of them, or JSONL) with

- its media: ``image`` (a path, or a list), ``images`` (a list) or ``video`` (a video file, or a folder of
  frames); paths resolve as a record's do (``data.image_root``, a source's ``image_root``, else the
  file's folder);
- its turns: ``conversations`` = ``[{"from": "human"|"gpt"|"system", "value": str}, ...]`` or
  ``messages`` = ``[{"role": "user"|"assistant"|"system", "content": str}, ...]``: an optional system
  turn first, then user and assistant turns in alternation, each user turn answered;
- ``<image>`` / ``<video>`` placeholders in the user turns: one per image, or one for the video, else the
  sample is refused naming both counts. The views are read once, where the first placeholder stands in
  the first user turn that has one (the text around it is kept); placeholders of later turns are removed
  (their views are already in the sample);
- any other fields, kept: ``id`` (or ``qid`` / ``question_id``), ``question_type`` (as ``qtype``),
  ``scene_id``, ``situation``, ``answers`` (a list per assistant turn when there are several) and the
  rest as they are.

:func:`conversation_records` turns one sample into vqkit records (docs/design.md, section 2), one per
assistant turn, so everything that reads records reads conversation files: training (the turns of a
sample are one training sample, :mod:`vqkit.data.dataset`), evaluation (one prediction per turn, with the
sample's id and ``turn``), ``vqkit prep conversations`` (the records written out). Records carry:

- ``question`` with one ``<image>`` where the views go when that is not after the question (where every
  prompt template puts them); ``system`` when the sample opens with a system turn;
- ``turn`` (1, 2, ...) and ``conversation`` (the sample's ``conversation`` field, else ``FILE:LINE``)
  when the sample has several assistant turns;
- ``geom_token`` (and ``depths``) read from a ScanNet **posed_images** folder when every frame has its
  ``<frame>.txt`` camera-to-world pose beside it (``intrinsic.txt`` in its folder, ``<frame>.png`` depth in
  millimetres when present): exactly what ``vqkit prep scanqa|sqa3d`` compute for the same frames
  (:func:`vqkit.prep.scannet.read_posed_frame`); a sample that carries its own ``geom_token`` keeps it;
- a video file's frames as frame references ``clip.mp4#frame=N`` (:mod:`vqkit.data.video`), at most
  ``data.video_frames`` of them spread evenly over the video; a folder of frames the same way.

Every problem is one line naming the file, the sample's line and the field, like a record's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqkit.data.video import folder_frames, is_video_file, spread_indices, video_frame_refs
from vqkit.errors import DataError
from vqkit.prep import common as prep_common
from vqkit.prep.scannet import read_posed_frame

TURN_KEYS = ("conversations", "messages")
MEDIA_KEYS = ("image", "images", "video")
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
VIEWS = "<image>"
"""Where a record's question places the views (when not after the question)."""
_PLACEHOLDER = re.compile(r"<image>|<video>")
_ID_KEYS = ("id", "qid", "question_id")


def is_conversation(obj: Any) -> bool:
    """Whether a parsed JSON object is a conversation sample (it has ``conversations`` or ``messages``)."""
    return isinstance(obj, dict) and any(k in obj for k in TURN_KEYS)


def parse_turns(obj: dict, ctx) -> tuple[str | None, list[tuple[str, str, str]]]:
    """(system text or None, [(user text, assistant text, user field name), ...]) of a sample."""
    key = next(k for k in TURN_KEYS if k in obj)
    turns = obj[key]
    if not isinstance(turns, list) or not turns:
        raise ctx.error(key, "expected a non-empty list of turns")
    system, pairs, pending = None, [], None
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise ctx.error(where, f"expected an object with from/value or role/content, got {type(turn).__name__}")
        role_key, text_key = ("from", "value") if "from" in turn else ("role", "content")
        role = ROLES.get(turn.get(role_key)) if isinstance(turn.get(role_key), str) else None
        if role is None:
            raise ctx.error(f"{where}.{role_key}", f"unknown role {turn.get(role_key)!r} (expected human, gpt or "
                                                   f"system; or user, assistant or system)")
        text = turn.get(text_key)
        if not isinstance(text, str):
            raise ctx.error(f"{where}.{text_key}", "missing" if text is None else
                            f"expected a string, got {type(text).__name__}")
        if not _PLACEHOLDER.sub("", text).strip():
            raise ctx.error(f"{where}.{text_key}", "the turn has no text")
        if role == "system":
            if pairs or pending is not None or system is not None:
                raise ctx.error(where, "a system turn may only open the conversation")
            system = text
        elif role == "user":
            if pending is not None:
                raise ctx.error(where, "two user turns in a row (each needs the assistant's answer after it)")
            pending = (text, f"{where}.{text_key}")
        else:
            if pending is None:
                raise ctx.error(where, "an assistant turn without a user turn before it")
            pairs.append((pending[0], text, pending[1]))
            pending = None
    if pending is not None:
        raise ctx.error(pending[1].rsplit(".", 1)[0], "the last user turn has no assistant answer after it")
    return system, pairs


@dataclass
class Media:
    """A sample's views: its media key, the image paths as written (frame references for a video file),
    the same resolved, their field names for errors, and how many placeholders they need."""

    key: str
    paths: list[str]
    resolved: list[str]
    names: list[str]
    placeholders: int
    decoded: bool = False
    """A video file (frames decoded, no poses)."""


def _media(obj: dict, ctx, video_frames: int) -> Media:
    present = [k for k in MEDIA_KEYS if obj.get(k) is not None]
    if not present:
        raise ctx.error("images", "missing: a conversation sample needs 'image', 'images' or 'video' "
                                  "(text-only samples are not read)")
    if len(present) > 1:
        raise ctx.error(present[1], f"a sample has one of image, images or video, not {' and '.join(present)}")
    key = present[0]
    value = obj[key]
    if key != "video":
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list) or not paths:
            raise ctx.error(key, "expected an image path or a non-empty list of image paths")
        names = [key if isinstance(value, str) else f"{key}[{i}]" for i in range(len(paths))]
        return Media(key, paths, [ctx.resolve(p, n) for p, n in zip(paths, names, strict=True)], names, len(paths))
    if not isinstance(value, str) or not value:
        raise ctx.error("video", f"expected a video file or a folder of frames, got {value!r}")
    full = ctx.resolve(value, "video", kind="path")
    if os.path.isdir(full):
        names = folder_frames(full)
        if not names:
            raise ctx.error("video", f"{full}: a folder without frames (.jpg, .png, ...)")
        names = [names[i] for i in spread_indices(len(names), video_frames)]
        return Media(key, [os.path.join(value, n) for n in names], [os.path.join(full, n) for n in names],
                     [f"video ({n})" for n in names], 1)
    if not is_video_file(full):
        raise ctx.error("video", f"{full}: neither a video file (.mp4, .avi, .mov, .mkv, .webm, ...) nor a "
                                 f"folder of frames")
    try:
        refs = video_frame_refs(value, full, video_frames)
    except DataError as e:
        raise ctx.error("video", str(e)) from None
    return Media(key, refs, [full + r[len(value):] for r in refs], ["video"] * len(refs), 1, decoded=True)


def _views_question(text: str) -> str:
    """A user turn's text as a record's question: the placeholders out, one ``<image>`` where the first
    stood unless the views come last (after the question, where the prompt templates put them)."""
    match = _PLACEHOLDER.search(text)
    if match is None:
        return text.strip()
    before = text[: match.start()].strip()
    after = _PLACEHOLDER.sub("", text[match.end():]).strip()
    if not after:
        return before
    return f"{before}\n{VIEWS}\n{after}" if before else f"{VIEWS}\n{after}"


def posed_geometry(resolved: list[str], paths: list[str], names: list[str], depth_bins: int, memo: dict,
                   error=lambda name, message: DataError(f"{name}: {message}")) -> dict | None:
    """``{"geom_token", "depths"?}`` of frames in ScanNet posed_images folders (``resolved`` on disk,
    ``paths`` as written), or None when the first frame has no pose file beside it; every frame must
    then have its own. ``memo`` remembers frames and scenes; ``error(name, message)`` makes the
    exception of a bad frame (``names``: how errors name each frame)."""
    cache = memo.setdefault("posed_frames", {})
    frames = []
    for full, name in zip(resolved, names, strict=True):
        if full not in cache:
            try:
                frame = read_posed_frame(full, memo.setdefault("posed_scenes", {}))
            except DataError as e:
                raise error(name, str(e)) from None
            hist = None if frame is None else prep_common.depth_hist_from_png(frame.depth, depth_bins)
            cache[full] = (frame, hist)
        frames.append(cache[full])
    posed = [f is not None for f, _ in frames]
    if not any(posed):
        return None
    if not all(posed):
        k, other = posed.index(False), 0 if posed[0] else posed.index(True)
        pose = os.path.splitext(os.path.basename(resolved[k]))[0] + ".txt"
        raise error(names[k], f"no camera pose {pose} beside it, while {names[other]} has one (every frame "
                              f"of a posed sample needs its pose)")
    hists = [h if h is not None else np.zeros(depth_bins, dtype=np.float32) for _, h in frames]
    out = {"geom_token": prep_common.geom_token([f.R for f, _ in frames], [f.t for f, _ in frames],
                                                [f.K for f, _ in frames], hists)}
    if all(f.depth is not None for f, _ in frames):
        out["depths"] = [os.path.splitext(p)[0] + ".png" for p in paths]
    return out


def _answers(obj: dict, n: int, ctx) -> list[Any] | None:
    """Each turn's reference answers from the sample's ``answers`` (one list per turn when n > 1)."""
    answers = obj.get("answers")
    if answers is None:
        return None
    if n == 1:  # a list of references, or the per-turn form of one turn
        one_turn = isinstance(answers, list) and len(answers) == 1 and isinstance(answers[0], list)
        return answers if one_turn else [answers]
    if not isinstance(answers, list) or len(answers) != n or not all(isinstance(a, list) for a in answers):
        raise ctx.error("answers", f"a sample with {n} assistant turns needs one list of answers per turn")
    return answers


def conversation_records(obj: dict, ctx, *, video_frames: int = 32, stem: str = "") -> list[dict]:
    """The records (dicts in vqkit's record format) of one conversation sample, one per assistant turn;
    ``ctx`` resolves paths and names the file and line in errors (``vqkit.data.schema``)."""
    system, pairs = parse_turns(obj, ctx)
    media = _media(obj, ctx, video_frames)
    counts = [len(_PLACEHOLDER.findall(user)) for user, _, _ in pairs]
    if sum(counts) != media.placeholders:
        n = media.placeholders
        what = f"{n} image{'s' * (n != 1)}" if media.key != "video" else "1 video"
        raise ctx.error(pairs[0][2], f"{sum(counts)} <image>/<video> placeholder{'s' * (sum(counts) != 1)} "
                                     f"for {what} (each image needs one, a video one)")
    base = {k: v for k, v in obj.items() if k not in TURN_KEYS + MEDIA_KEYS + ("question", "answer")}
    base["images"] = media.paths
    if "id" not in obj:
        found = next((obj[k] for k in _ID_KEYS if obj.get(k) is not None), None)
        if found is not None:
            base["id"] = found
    if "qtype" not in obj and obj.get("question_type") is not None:
        base["qtype"] = str(obj["question_type"])
    if obj.get("geom_token") is None and not media.decoded:
        geometry = posed_geometry(media.resolved, media.paths, media.names, ctx.depth_bins or 16, ctx.memo,
                                  ctx.error)
        for field, value in (geometry or {}).items():
            base.setdefault(field, value)
    if system is not None:
        base["system"] = system
    answers = _answers(obj, len(pairs), ctx)
    situation = obj.get("situation")
    seen_views = False
    records = []
    for k, (user, assistant, _) in enumerate(pairs):
        if isinstance(situation, str) and situation and k == 0 and user.startswith(situation + " "):
            user = user[len(situation) + 1:]  # the layout vqkit writes (prep export-conversations)
        question = _views_question(user) if not seen_views else _PLACEHOLDER.sub("", user).strip()
        seen_views = seen_views or counts[k] > 0
        record = {**base, "question": question}
        if obj.get("roomplan") is None or len(pairs) > 1:
            record["answer"] = assistant
        if answers is not None:
            record["answers"] = answers[k]
        if len(pairs) > 1:
            record["turn"] = k + 1
            record["conversation"] = str(obj.get("conversation") or f"{stem}:{ctx.line}")
        records.append(record)
    return records
