"""Records on disk: reading JSON/JSONL corpora and validating every record before training.

A record (docs/design.md, section 2) is one JSON object::

    {"images": ["scene0000/00010.jpg", ...],          # 1..N paths (required)
     "question": "what is next to the bed?",            # required
     "answer": "nightstand",                           # Stage 1 (or "roomplan": {...} for Stage 2,
                                                       #  "box": {...} for grounding)
     "id": ..., "scene_id": ..., "task": "scanqa", "qtype": ..., "answers": [...], "situation": ...,
     "depths": ["scene0000/00010.png", ...],           # 16-bit PNG, millimetres, 0 = invalid
     "semantics": ["scene0000/00010_sem.png", ...],    # 8-bit PNG, class index, 255 = unlabelled
     "geom_token": null | {"R": Vx3x3, "t": Vx3, "K": Vx3x3, "depth_hist": VxB}}

``R, t`` are world-to-camera in OpenCV axes (``x_cam = R @ x_world + t``), ``K`` is the pixel intrinsic matrix of
the image file as stored, ``depth_hist`` the fraction of valid depth pixels per bin (``vqkit.cameras``).
``question_type`` (VG-LLM's name) is the ``qtype`` of a record without one; other keys are kept in ``Record.extra``.

Paths: relative paths resolve against ``data.image_root`` when set, else against the folder of the
record file. A path that lands outside that root (``..``, or an absolute path elsewhere) is refused
unless ``allow_outside_root``. The check is lexical (``..`` is collapsed, symlinks are not followed),
so a symlinked image folder inside the root is fine while ``../../etc/passwd`` is not.

Every problem is a :class:`~vqkit.errors.DataError` whose message starts ``FILE:LINE: field 'F':``.
With ``on_error="skip"`` bad records are dropped, counted in a :class:`LoadReport` and logged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vqkit.cameras import are_rotations
from vqkit.data.conversations import conversation_records, is_conversation
from vqkit.data.record_files import expand_paths, iter_json_objects, read_earlier, read_once_key, remember
from vqkit.data.targets import box_answer, box_record, read_box_field, roomplan_text
from vqkit.data.video import media_file
from vqkit.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.roomplan.elements import RoomObject

log = logging.getLogger("vqkit.data")

KNOWN_FIELDS = ("images", "question", "answer", "roomplan", "box", "id", "scene_id", "task", "qtype", "question_type",
                "answers", "situation", "depths", "semantics", "geom_token", "turn", "conversation", "system")
VIEWS = "<image>"
"""In a question: where the views go (when not after the question, where the prompt template puts them)."""


@dataclass
class Geometry:
    """Per-view camera geometry of one record (float32 numpy arrays, V = number of views).

    R [V, 3, 3] and t [V, 3]: world-to-camera, OpenCV axes. K [V, 3, 3]: pixel intrinsics of the
    stored images. depth_hist [V, B] or None when the record gives none.
    """

    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    depth_hist: np.ndarray | None = None

    def select(self, views: list[int] | np.ndarray) -> Geometry:
        """The geometry of a subset of views, in the given order."""
        idx = np.asarray(views, dtype=np.int64)
        return Geometry(self.R[idx], self.t[idx], self.K[idx],
                        None if self.depth_hist is None else self.depth_hist[idx])


@dataclass
class Record:
    """One validated record; image and depth paths are absolute. ``source``/``line`` say where it
    came from (line = 1-based line of the JSONL line, or of the object's first character in a JSON
    array)."""

    images: list[str]
    question: str
    answer: str | None = None
    roomplan: dict | None = None
    id: str = ""
    scene_id: str | None = None
    task: str | None = None
    qtype: str | None = None
    answers: list[str] = field(default_factory=list)
    situation: str | None = None
    depths: list[str] | None = None
    semantics: list[str] | None = None
    """Per-view semantic maps (`vqkit pretrain-encoder`'s semantic objective); None when absent."""
    geometry: Geometry | None = None
    source: str = ""
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    """Stage 2: the layout text, computed (and so validated) when the record is loaded."""
    vision_at: int | None = None
    """Where the views go in ``question`` (its ``<image>`` on disk); None = where the template puts them."""
    turn: int | None = None
    """The assistant turn (1, 2, ...) of a conversation of several; None for a one-question record."""
    conversation: str | None = None
    """The key shared by a conversation's turns: training reads them as one sample."""
    system: str | None = None
    """The conversation's system message (chat templates), else ``data.system_prompt``."""
    box: RoomObject | None = None
    """Grounding: the target's box in the scene frame (``vqkit.roomplan.grounding``); the answer text is
    written from it in the frame the config asks for (:meth:`grounding_target`)."""

    @property
    def where(self) -> str:
        """``file:line`` for messages."""
        return f"{self.source}:{self.line}"

    @property
    def num_views(self) -> int:
        return len(self.images)

    @property
    def prompt_situation(self) -> str | None:
        """The situation the prompt places before the question: none when the question already holds it."""
        return self.situation if self.situation and self.situation not in self.question else None

    @property
    def unanswered(self) -> bool:
        """A question without references (``answers: []``, no answer: ScanQA's test split)."""
        return self.answer is None and self.roomplan is None and self.box is None

    def target_text(self) -> str:
        """The training target: the answer (Stage 1), the RoomPlan layout as text (Stage 2), or the
        box as text in the scene frame (grounding; :meth:`grounding_target` for other frames)."""
        if self.answer is not None:
            return self.answer
        if self.box is not None:
            return self.grounding_target()
        if self.roomplan is None:
            raise DataError(f"{self.where}: record '{self.id}': no answer ('answers': [], a question without "
                            f"references): it can be asked and exported, not trained on")
        if self.target is None:
            self.target = roomplan_text(self.roomplan, self.where)
        return self.target

    def first_view_pose(self, view: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """World-to-camera (R, t) of image ``view`` (the first view a sample shows), None without geometry."""
        if self.geometry is None:
            return None
        return self.geometry.R[view], self.geometry.t[view]

    def grounding_target(self, box_frame: str = "scene", step_cm: int = 1, first_view: int = 0) -> str:
        """A grounding record's answer text: its box in ``box_frame`` (the frame of image ``first_view``
        for ``first_view``), lengths rounded to ``step_cm`` (:func:`vqkit.data.targets.box_answer`)."""
        return box_answer(self.box, self.first_view_pose(first_view), box_frame, step_cm,
                          f"{self.where}: record '{self.id}'")

    def meta(self) -> dict[str, Any]:
        """The per-sample dict the collator puts in ``batch["meta"]`` (scoring and display)."""
        out = {"id": self.id, "task": self.task, "qtype": self.qtype, "question": self.question,
               "situation": self.situation, "answers": list(self.answers), "scene_id": self.scene_id,
               "images": list(self.images), "source": self.source, "line": self.line}
        if self.turn is not None:
            out["turn"] = self.turn
        if self.roomplan is not None:
            out["roomplan"] = self.roomplan
        if self.box is not None:
            out["box"] = box_record(self.box)
            out.update({k: self.extra[k] for k in ("description", "object_id", "relation") if k in self.extra})
        return out


@dataclass
class LoadReport:
    """What a load kept and dropped (``on_error="skip"``), per file and in total."""

    num_loaded: int = 0
    num_skipped: int = 0
    """Records, or whole conversation samples, dropped."""
    num_conversations: int = 0
    """Conversation samples read (each gave one record per assistant turn)."""
    errors: list[str] = field(default_factory=list)
    """Messages of skipped records (the first ``max_messages``)."""
    max_messages: int = 100

    def add_error(self, message: str) -> None:
        self.num_skipped += 1
        if len(self.errors) < self.max_messages:
            self.errors.append(message)

    def merge(self, other: LoadReport) -> None:
        self.num_loaded += other.num_loaded
        self.num_skipped += other.num_skipped
        self.num_conversations += other.num_conversations
        self.errors.extend(other.errors[: max(0, self.max_messages - len(self.errors))])

    def summary(self) -> str:
        text = f"{self.num_loaded} records loaded, {self.num_skipped} skipped"
        if self.num_conversations:
            text = text.replace(" loaded,", f" loaded from {self.num_conversations} conversation samples,")
        if self.errors:
            text += f" (first: {self.errors[0]})"
        return text


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


class RecordContext:
    """Where a record came from and how to resolve its paths."""

    def __init__(self, source: Path, root: Path, allow_outside_root: bool, depth_bins: int | None,
                 check_files: bool):
        self.source = str(source)
        self.root = Path(os.path.normpath(os.path.abspath(root)))
        self.root_str = str(self.root)
        self.root_prefix = self.root_str if self.root_str.endswith(os.sep) else self.root_str + os.sep
        self.allow_outside_root = allow_outside_root
        self.depth_bins = depth_bins
        self.check_files = check_files
        self.line = 0
        # A scene's questions repeat its views and cameras record after record (8 per synthetic room,
        # dozens per ScanQA scene): each path is resolved and checked once, each view set's geometry
        # validated once while the next record repeats it exactly.
        self._resolved: dict[str, str] = {}
        self._geometry: dict[tuple, tuple[Any, Geometry]] = {}
        self.memo: dict[str, dict] = {}  # what conversation samples share (posed frames, scene intrinsics)

    def error(self, field_name: str, message: str) -> DataError:
        return DataError(f"{self.source}:{self.line}: field '{field_name}': {message}")

    def resolve(self, value: Any, field_name: str, kind: str = "file") -> str:
        """The absolute path of ``value`` (checked to exist: a file, or with ``kind="path"`` a file or a
        folder); a video's frame reference ``clip.mp4#frame=N`` resolves its file."""
        if kind != "file":
            return self._resolve(value, field_name, os.path.exists)
        full = self._resolved.get(value) if isinstance(value, str) else None
        if full is None:
            full = self._resolved[value] = self._resolve(value, field_name, os.path.isfile)
        return full

    def geometry(self, value: Any, images: tuple) -> Geometry | None:
        """:func:`_geometry` of a record's ``geom_token``, shared with the last record of the same
        ``images`` when its ``geom_token`` is equal (the Geometry's arrays are read-only)."""
        seen = self._geometry.get(images)
        if seen is not None and value is not None and seen[0] == value:
            return seen[1]
        geometry = geometry_of(value, len(images), self)
        if geometry is not None:
            for arr in (geometry.R, geometry.t, geometry.K, geometry.depth_hist):
                if arr is not None:
                    arr.flags.writeable = False
            self._geometry[images] = (value, geometry)
        return geometry

    def _resolve(self, value: Any, field_name: str, exists) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(field_name, f"expected a non-empty path string, got {value!r}")
        # os.path, not pathlib: this runs for every image of every record when a corpus loads.
        full = os.path.normpath(os.path.join(self.root_str, os.path.expanduser(value)))
        if not self.allow_outside_root and not (full == self.root_str or full.startswith(self.root_prefix)):
            raise self.error(field_name, f"{value} resolves outside the data root {self.root} (to allow it: "
                                         f"data.allow_outside_root: true in a config, allow_outside_root=True "
                                         f"in load_records and notebook 01's parameters)")
        if self.check_files and not exists(media_file(full)):
            raise self.error(field_name, f"file not found: {media_file(full)}")
        return full


def _text(obj: dict, key: str, ctx: RecordContext, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ctx.error(key, "missing (required)")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("answer", "id", "scene_id"):
        value = str(value)  # numeric answers/ids ("2") are common in converted corpora
    if not isinstance(value, str):
        raise ctx.error(key, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ctx.error(key, "is empty")
    return value


def _array(value: Any, shape: tuple[int, ...], name: str, ctx: RecordContext) -> np.ndarray:
    """A finite float32 array of exactly ``shape`` (-1 = any size)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ctx.error(name, f"expected numbers of shape {_fmt_shape(shape)}, got a ragged or "
                              f"non-numeric value") from None
    if arr.ndim != len(shape) or any(s != -1 and a != s for a, s in zip(arr.shape, shape, strict=True)):
        raise ctx.error(name, f"expected shape {_fmt_shape(shape)}, got {_fmt_shape(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ctx.error(name, f"non-finite value at view {bad[0]} ({arr[tuple(bad)]})")
    return arr.astype(np.float32)


def _fmt_shape(shape) -> str:
    return "x".join("B" if s == -1 else str(s) for s in shape) if shape else "scalar"


def geometry_of(value: Any, num_views: int, ctx: RecordContext) -> Geometry | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ctx.error("geom_token", f"expected null or an object with R, t, K, depth_hist, got "
                                      f"{type(value).__name__}")
    for key in ("R", "t", "K"):
        if key not in value:
            raise ctx.error(f"geom_token.{key}", "missing (geom_token needs R, t and K)")
    V = num_views
    R = _array(value["R"], (V, 3, 3), "geom_token.R", ctx)
    t = _array(value["t"], (V, 3), "geom_token.t", ctx)
    K = _array(value["K"], (V, 3, 3), "geom_token.K", ctx)
    rotations = are_rotations(R)
    last_row = np.array([0.0, 0.0, 1.0])
    last_row_ok = (np.abs(K[:, 2] - last_row) <= 1e-6 + 1e-5 * last_row).all(axis=1)  # np.allclose(atol=1e-6)
    intrinsics = (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0) & last_row_ok
    bad_views = np.flatnonzero(~(rotations & intrinsics))
    if bad_views.size:
        v = int(bad_views[0])  # the first bad view is the one named
        if not rotations[v]:
            det = float(np.linalg.det(R[v].astype(np.float64)))
            raise ctx.error("geom_token.R", f"view {v} is not a rotation (det {det:.3f}; expected an "
                                            f"orthonormal world-to-camera matrix with det +1)")
        raise ctx.error("geom_token.K", f"view {v} is not a pixel intrinsic matrix (need fx, fy > 0 "
                                        f"and last row [0, 0, 1])")
    hist = None
    if value.get("depth_hist") is not None:
        bins = ctx.depth_bins if ctx.depth_bins is not None else -1
        hist = _array(value["depth_hist"], (V, bins), "geom_token.depth_hist", ctx)
        if np.any(hist < 0):
            raise ctx.error("geom_token.depth_hist", "fractions must be >= 0")
    return Geometry(R, t, K, hist)


def validate_record(obj: Any, ctx: RecordContext) -> Record:
    """Check one parsed record and resolve its paths; raises DataError naming file, line, field."""
    if not isinstance(obj, dict):
        raise ctx.error("(record)", f"expected a JSON object, got {type(obj).__name__}")
    images = obj.get("images")
    if not isinstance(images, list) or not images:
        raise ctx.error("images", "expected a non-empty list of image paths"
                        if images is not None else "missing (required)")
    image_paths = [ctx.resolve(p, f"images[{i}]") for i, p in enumerate(images)]
    question, vision_at = _place_views(_text(obj, "question", ctx, required=True), ctx)

    roomplan = obj.get("roomplan")
    box = read_box_field(obj, ctx.error)
    # "answers": [] and no answer: a question without references (ScanQA's test split), asked, never scored.
    unanswered = obj.get("answers") == [] and obj.get("answer") is None
    if obj.get("answer") is None and roomplan is None and box is None and not unanswered:
        raise ctx.error("answer", "missing (a record needs 'answer', or 'roomplan' for Stage 2, or 'box' for "
                                  "grounding; 'answers': [] marks a question without references)")
    answer = _text(obj, "answer", ctx, required=True) if obj.get("answer") is not None else None
    if roomplan is not None and not isinstance(roomplan, dict):
        raise ctx.error("roomplan", f"expected a CapturedRoom object, got {type(roomplan).__name__}")

    target = None
    if answer is None and roomplan is not None and importlib.util.find_spec("vqkit.roomplan") is not None:
        # Converting now makes a malformed layout fail when the dataset is built, not mid-training.
        target = roomplan_text(roomplan, f"{ctx.source}:{ctx.line}")
        if not target.strip():
            raise ctx.error("roomplan", "the layout converts to an empty text")

    answers = obj.get("answers")
    if answers is None:
        answers = [answer] if answer is not None else []
    elif not isinstance(answers, list) or not all(isinstance(a, (str, int, float)) for a in answers):
        raise ctx.error("answers", "expected a list of strings")
    answers = [str(a) for a in answers]

    depths, semantics = (_per_view_paths(obj, name, len(images), ctx) for name in ("depths", "semantics"))

    geometry = ctx.geometry(obj.get("geom_token"), tuple(image_paths))
    rid = _text(obj, "id", ctx, required=False)
    turn, conversation = _turn(obj, ctx)
    return Record(
        images=image_paths, question=question, answer=answer, roomplan=roomplan,
        id=rid if rid is not None else f"{Path(ctx.source).stem}:{ctx.line}",
        scene_id=_text(obj, "scene_id", ctx, required=False),
        task=_text(obj, "task", ctx, required=False),
        qtype=_text(obj, "qtype", ctx, required=False) or _text(obj, "question_type", ctx, required=False),
        answers=answers, situation=_text(obj, "situation", ctx, required=False),
        depths=depths, semantics=semantics, geometry=geometry, source=ctx.source, line=ctx.line,
        extra={k: v for k, v in obj.items() if k not in KNOWN_FIELDS}, target=target, box=box,
        vision_at=vision_at, turn=turn, conversation=conversation,
        system=_text(obj, "system", ctx, required=False),
    )


def _place_views(question: str, ctx) -> tuple[str, int | None]:
    """(the question without its ``<image>``, where the views go) of a record's question."""
    if VIEWS not in question:
        return question, None
    if question.count(VIEWS) > 1:
        raise ctx.error("question", f"more than one {VIEWS} (one marks where all the views go)")
    before, after = (part.strip() for part in question.split(VIEWS))
    if not before and not after:
        raise ctx.error("question", f"has no text besides {VIEWS}")
    return (f"{before}\n{after}" if before and after else before or after), len(before)


def _turn(obj: dict, ctx) -> tuple[int | None, str | None]:
    """(turn, conversation) of a record that is one turn of a conversation: both or neither."""
    turn, conversation = obj.get("turn"), obj.get("conversation")
    if turn is None and conversation is None:
        return None, None
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise ctx.error("turn", f"expected the assistant turn's number (1, 2, ...), got {turn!r}")
    if not isinstance(conversation, str) or not conversation:
        raise ctx.error("conversation", f"expected the key the turns of one conversation share, got {conversation!r}")
    return turn, conversation


def _per_view_paths(obj: dict, name: str, views: int, ctx) -> list[str] | None:
    """An optional field of one path per image (``depths``, ``semantics``), resolved like the images."""
    paths = obj.get(name)
    if paths is None:
        return None
    if not isinstance(paths, list) or len(paths) != views:
        raise ctx.error(name, f"expected a list of {views} paths (one per image)")
    return [ctx.resolve(p, f"{name}[{i}]") for i, p in enumerate(paths)]


def object_records(obj: Any, ctx: RecordContext, format: str = "auto", video_frames: int = 32) -> list[Any]:
    """The records (as dicts) of one parsed object of a file: the object itself when it is a record, one per
    assistant turn of a conversation sample (``format``: see :func:`load_records`)."""
    if format == "conversations" or (format == "auto" and is_conversation(obj)):
        if not is_conversation(obj):
            raise ctx.error("conversations", "missing (the source's format is conversations)")
        return conversation_records(obj, ctx, video_frames=video_frames, stem=Path(ctx.source).stem)
    return [obj]


def load_records(pattern: str, *, image_root: str | None = None, allow_outside_root: bool = False,
                 on_error: str = "raise", depth_bins: int | None = None, check_files: bool = True,
                 report: LoadReport | None = None, limit: int | None = None, format: str = "auto",
                 video_frames: int = 32) -> list[Record]:
    """Read and validate every record of a ``.json``/``.jsonl`` file or glob (the first ``limit`` only,
    when given); inside :func:`vqkit.data.record_files.read_records_once`, each file once.

    ``format``: ``records`` (vqkit's record format), ``conversations`` (LLaVA / Qwen-VL-finetune
    samples, read by :func:`vqkit.data.conversations.conversation_records`: one record per assistant
    turn, a video's frames at most ``video_frames``) or ``auto`` (each object by its content: one with
    ``conversations`` or ``messages`` is a conversation sample).

    ``on_error="raise"`` stops at the first bad record with a DataError ``FILE:LINE: field 'F': ...``;
    ``"skip"`` drops it (a whole conversation sample) and counts it in ``report`` (and logs a summary).
    ``depth_bins`` checks the width of ``depth_hist``; ``check_files`` checks that images and depth maps exist.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"data.on_error must be 'raise' or 'skip', got {on_error!r}")
    if format not in ("auto", "records", "conversations"):
        raise DataError(f"a source's format must be auto, records or conversations, got {format!r}")
    report = report if report is not None else LoadReport()
    key = read_once_key(pattern, image_root, allow_outside_root, on_error, depth_bins, check_files, limit, format,
                        video_frames)
    if (earlier := read_earlier(key)) is not None:
        report.merge(earlier[1])
        return list(earlier[0])
    this_call = LoadReport()
    records: list[Record] = []
    for path in expand_paths(pattern):
        file_report = LoadReport()
        root = Path(image_root).expanduser() if image_root else path.parent
        ctx = RecordContext(path, root, allow_outside_root, depth_bins, check_files)
        for line, obj in iter_json_objects(path):
            if limit is not None and len(records) >= limit:
                break
            ctx.line = line
            try:
                if isinstance(obj, DataError):
                    raise obj
                turns = [validate_record(r, ctx) for r in object_records(obj, ctx, format, video_frames)]
                records.extend(turns)
                file_report.num_loaded += len(turns)
                file_report.num_conversations += is_conversation(obj)
            except DataError as e:
                if on_error == "raise":
                    raise
                file_report.add_error(str(e))
        if file_report.num_skipped:
            log.warning("%s: skipped %d bad record(s) or sample(s) of %d; first: %s", path, file_report.num_skipped,
                        file_report.num_skipped + file_report.num_loaded, file_report.errors[0])
        this_call.merge(file_report)
    report.merge(this_call)
    remember(key, records, this_call)
    return list(records)
