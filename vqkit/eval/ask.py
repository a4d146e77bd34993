"""``vqkit ask``: answer a question about any set of photos with a saved model.

``--images`` takes files and folders: a folder gives its photos in name order (single-channel images,
the depth and label maps written beside photos, are left out and counted in a note), an animated GIF
(or WebP / PNG) its frames (:func:`image_paths`); notes name views relative to the folder they share,
so views of two folders stay apart (:func:`view_labels`).

The photos go through exactly the dataset's preprocessing (``vqkit.data.dataset.RecordDataset``:
VGGT resize/crop, ``data.num_views`` chosen evenly when more are given) and the prompt through the
collator, so the model sees what it saw in training.

Everything about the input is checked before the model is loaded (:func:`prepare_ask`: the question,
that every photo exists and the ones used decode, the cameras, and that ``--roomplan`` goes to a
Stage 2 model), and what is left out is said, not silent (:attr:`AskInput.notes`: which photos were
kept when there are more than ``data.num_views``, and when the answer is made without camera
geometry although the model has a geometry encoder).

Camera geometry (one geometry token per view): a model trained on records with ``geom_token`` (the
demo's, every synthetic record) answers best with it. ``--cameras FILE`` gives it as a list of
``{"image": name, "R", "t", "K", "depth_hist"}`` (the ``cameras.json`` that ``vqkit synth`` writes
next to a room's views); without ``--cameras`` such a file next to the photos is used when it lists
every photo, and ``--no-geometry`` leaves geometry out (then the prompt carries only the projector's
vision tokens, as for photos without poses). With ``model.geometry.source: auto`` (or ``--set
model.geometry.source=auto``) photos without cameras get the geometry VGGT's camera and depth heads
predict from them (the heads of ``model.encoder.weights``; a note says so); with ``heads`` the
geometry is always predicted. Photos of different sizes are padded to a common size as in training
(the depth histograms count each photo's own pixels only).

    vqkit ask --model runs/demo/final --images a.jpg b.jpg c.jpg --question "How many chairs are there?"
    vqkit ask --model runs/demo/final --images kitchen/ --question "How many chairs are there?"
    vqkit ask --model runs/stage2_demo/final --images a.jpg b.jpg --roomplan --out room.json

From Python: ``answer = ask(model, ["a.jpg", "b.jpg"], "How many chairs are there?")``, for a
Stage 2 model ``room, problems, text = ask_roomplan(model, ["a.jpg", "b.jpg"])``, and for a grounding
model ``found = ask_ground(model, ["a.jpg", "b.jpg"], "the pink bed")`` (:class:`GroundingAnswer`).

``--ground "the pink bed"`` asks for the box of the object the expression names (the grounding prompt
``Locate: <expression>``, budget ``eval.grounding_max_new_tokens``), reads the answer as ``vqkit eval``
reads grounding answers, and prints the box; ``--out FILE`` writes it as JSON (``box`` as in grounding
records, its 8 ``corners``, the ``frame``, the text and any parse problems). A model that writes boxes
in the first view's frame (``data.box_frame: first_view``) has them turned into the cameras' frame with
the first photo's pose; photos without camera geometry leave the box in the first view's frame
(``frame: first_view``: the first photo's camera at x = y = 0 looking along +y, heights from the floor
as the model learned them), and a note says so. A model that reads depth maps (``data.load_depth``, for the
patch merger's 3D points: the grounding demo) gets the ``depth`` PNG that each photo's entry in the cameras
file names, found beside the photo (what ``vqkit synth`` writes); without them a note says its tokens
carry no 3D points.

``--roomplan`` asks Stage 2's question (``vqkit.roomplan.ROOMPLAN_QUESTION``, the prompt of the
synthetic and ARKit layout records) with the layout budget ``eval.roomplan_max_new_tokens``,
generation stopping at a repeated element like ``vqkit eval`` does for layout records, parses the
text with :meth:`vqkit.roomplan.Room.from_text` and writes ``room.to_capturedroom()`` (Apple's
CapturedRoom JSON, y-up) to ``--out`` or stdout; lines that did not parse are listed on stderr.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqkit.data.cameras_file import geometry_from_cameras, read_cameras
from vqkit.data.collate import Collator
from vqkit.data.conversations import posed_geometry
from vqkit.data.dataset import RecordDataset
from vqkit.data.images import load_views
from vqkit.data.schema import Geometry, Record, expand_paths, iter_json_objects
from vqkit.data.video import (
    ANIMATED_SUFFIXES,
    FRAME_SUFFIXES,
    animated_frame_refs,
    count_frames,
    folder_frames,
    is_video_file,
    media_file,
    parse_frame_ref,
    spread_indices,
    video_frame_refs,
)
from vqkit.data.views import choose_views
from vqkit.errors import ConfigError, DataError
from vqkit.eval.generate import generation_kwargs
from vqkit.eval.missing_geometry import effective_source, how_to_give_geometry
from vqkit.roomplan import ROOMPLAN_QUESTION, Room, RoomObject
from vqkit.roomplan.grounding import (
    SCENE_FRAME,
    box_corners,
    box_to_dict,
    first_view_frame,
    grounding_question,
    read_box,
)

log = logging.getLogger("vqkit.ask")
#: What ``--images FOLDER`` reads from a folder.
IMAGE_SUFFIXES = tuple(dict.fromkeys(FRAME_SUFFIXES + ANIMATED_SUFFIXES))


@dataclass
class AskInput:
    """One question about a set of photos, checked and preprocessed: ``sample`` is the dataset item
    (images, geometry, prompt text), ``used`` the photos the model sees, ``notes`` what was left out,
    ``geometry_source`` the ``model.geometry.source`` the answer is made with (``records`` when the
    heads cannot or should not predict: no head weights, ``--no-geometry``)."""

    sample: dict[str, Any]
    used: list[str]
    notes: list[str] = field(default_factory=list)
    geometry_source: str = "records"


def view_labels(paths: Sequence[str]) -> list[str]:
    """Short names of views that still tell them apart: each path relative to the folder all of them share
    (the file names when they share their folder; ``kitchen/0.jpg`` and ``hall/0.jpg`` for two folders;
    a frame as ``anim.gif#frame=2``)."""
    if not paths:
        return []
    files = [media_file(p) for p in paths]
    common = os.path.commonpath([os.path.dirname(f) for f in files])
    return [os.path.relpath(f, common) + p[len(f):] for p, f in zip(paths, files, strict=True)]


def _names(paths: Sequence[str], labels: dict[str, str], most: int = 8) -> str:
    names = [labels[p] for p in paths]
    return ", ".join(names if len(names) <= most else [*names[:most], f"... ({len(names) - most} more)"])


def _single_channel(path: Path) -> bool:
    """Whether an image file holds one channel (grey, 16-bit, float or bilevel: a depth or label map
    beside the photos, as vqkit synth and ScanNet exports write them); unreadable files count as photos
    (decoding them later names the error)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
    except (OSError, ValueError):
        return False


def image_paths(images: Sequence[str], notes: list[str]) -> list[str]:
    """The views ``--images`` names, resolved: a file as it is, a folder as its photos in name order
    (numbers compared as numbers; single-channel images, depth or label maps, left out), a multi-frame
    image (an animated GIF, WebP or PNG) as its frames; each folder and animation said in ``notes``. A
    path that does not exist, or a folder without photos, is a DataError naming it."""
    paths: list[str] = []
    for given in images:
        path = Path(given).expanduser()
        if path.is_dir():
            names = folder_frames(str(path), IMAGE_SUFFIXES)
            maps = [n for n in names if _single_channel(path / n)]  # depth or label maps, not photos
            names = [n for n in names if n not in set(maps)]
            if not names:
                raise DataError(f"{given}: a folder without photos ({', '.join(IMAGE_SUFFIXES)}"
                                + (f"; {len(maps)} single-channel image(s), depth or label maps, are not photos)"
                                   if maps else ")"))
            notes.append(f"{given}: {len(names)} photo(s), in name order"
                         + (f" ({len(maps)} single-channel image(s) left out as depth or label maps: "
                            f"{', '.join(maps[:4])}{', ...' if len(maps) > 4 else ''})" if maps else ""))
            files = [str((path / n).resolve()) for n in names]
        elif path.is_file():
            files = [str(path.resolve())]
        else:
            raise DataError(f"{given}: image not found (neither a file nor a folder)")
        for file in files:
            frames = animated_frame_refs(file)
            if len(frames) > 1:
                notes.append(f"{Path(file).name}: {len(frames)} frames, read as {len(frames)} views")
            paths += frames
    return paths


def _cameras_beside(paths: list[str], depth_bins: int) -> tuple[Any, str | None]:
    """(Geometry from the cameras.json beside the photos, or from ScanNet posed_images pose files beside
    them, or None and why not)."""
    if parse_frame_ref(paths[0]) is not None:
        return None, "no --cameras, and the frames of a video or an animated image carry no camera poses"
    beside = Path(paths[0]).parent / "cameras.json"
    if not beside.is_file():
        posed = posed_geometry(paths, paths, paths, depth_bins, {})
        if posed is None:
            return None, "no --cameras, no cameras.json and no posed_images pose files beside the photos"
        token = posed["geom_token"]
        return Geometry(*(np.asarray(token[k], dtype=np.float32) for k in ("R", "t", "K", "depth_hist"))), None
    try:
        by_name = read_cameras(beside)
    except DataError as e:
        return None, str(e)
    missing = [Path(p).name for p in paths if Path(p).name not in by_name]
    if missing:
        return None, f"{beside} does not list {', '.join(missing)}"
    return geometry_from_cameras(by_name, paths, depth_bins, beside), None


def _geometry_of(cfg, cameras: str | Path | bool | None, paths: list[str], notes: list[str]) -> tuple[Any, str]:
    """The photos' Geometry from ``cameras`` (see :func:`prepare_ask`) or None, and the geometry source
    the answer uses; what happens is said in ``notes`` (geometry missing, or predicted by the heads), with
    a suggestion that works for this model (:func:`vqkit.eval.missing_geometry.how_to_give_geometry`)."""
    geo = cfg.model.geometry
    if cameras is False:
        return None, "records"  # --no-geometry: neither given nor predicted
    source, why_not = effective_source(cfg)
    if source == "heads":
        if cameras is not None:
            notes.append(f"{cameras} is not used: model.geometry.source is heads (geometry predicted from the photos)")
        notes.append(f"camera geometry predicted by VGGT's camera and depth heads ({cfg.model.encoder.weights})")
        return None, source
    if cameras is not None:
        return geometry_from_cameras(read_cameras(cameras), paths, geo.depth_bins, Path(cameras)), source
    geometry, why = _cameras_beside(paths, geo.depth_bins)
    if geometry is not None:
        return geometry, source
    if source == "auto":
        notes.append(f"camera geometry predicted by VGGT's camera and depth heads ({cfg.model.encoder.weights}): "
                     f"{why}; depth histograms at the scale of a {geo.median_depth_m:g} m median depth "
                     f"(model.geometry.median_depth_m)")
    elif why.startswith("no --cameras"):
        cannot = f" (model.geometry.source auto cannot predict it: {why_not})" if why_not else ""
        notes.append(f"no camera geometry: {why}, so the answer uses no geometry tokens{cannot}; a model trained on "
                     f"posed views answers best with them: {how_to_give_geometry(cfg, photos=True)}")
    else:
        notes.append(f"no camera geometry: {why}")
    return None, source


def _depths_beside(paths: list[str], cameras: str | Path | bool | None, notes: list[str]) -> list[str] | None:
    """Depth maps of the photos for a model that reads them (``data.load_depth``: the patch merger's 3D
    points): the ``depth`` each photo's entry in the cameras file names, found beside the photo (as
    ``vqkit synth`` writes them); None, with a note, when any is missing."""
    source = Path(cameras) if isinstance(cameras, (str, Path)) else Path(paths[0]).parent / "cameras.json"
    try:
        by_name = read_cameras(source) if cameras is not False and source.is_file() else {}
    except DataError:
        by_name = {}
    found = [Path(p).parent / Path(by_name.get(Path(p).name, {}).get("depth") or "-").name for p in paths]
    if all(f.is_file() for f in found):
        return [str(f) for f in found]
    notes.append("no depth maps for the photos (the model reads them: data.load_depth), so its tokens carry no 3D "
                 "points; a cameras file whose entries name a 'depth' PNG beside each photo gives them")
    return None


def _video_views(video: str, max_frames: int, notes: list[str]) -> list[str]:
    """The frames of a video file (frame references) or a folder of frames, at most ``max_frames``
    spread evenly over it (as a conversation file's ``video`` is read)."""
    path = Path(video).expanduser().resolve()
    if path.is_dir():
        names = folder_frames(str(path))
        if not names:
            raise DataError(f"{video}: a folder without frames (.jpg, .png, ...)")
        kept = [str(path / names[i]) for i in spread_indices(len(names), max_frames)]
        total = len(names)
    elif path.is_file():
        if not is_video_file(str(path)):
            raise DataError(f"{video}: neither a video file (.mp4, .avi, .mov, .mkv, .webm, ...) nor a folder "
                            f"of frames")
        kept = video_frame_refs(str(path), str(path), max_frames)
        total = count_frames(str(path))
    else:
        raise DataError(f"{video}: video not found")
    if len(kept) < total:
        notes.append(f"the video's {total} frames give {len(kept)}, spread evenly (data.video_frames)")
    return kept


def prepare_ask(cfg, images: Sequence[str] | None, question: str, *, situation: str | None = None,
                blind: bool = False, cameras: str | Path | bool | None = None, video: str | None = None) -> AskInput:
    """Check and preprocess a question about ``images`` (or the frames of ``video``: a video file or a
    folder of frames) without the model (so bad input fails before the model loads). ``cameras``: a
    cameras file (see the module docstring), None to use a ``cameras.json`` beside the photos when it
    lists them all (or the pose files of ScanNet posed_images frames), False for no geometry.

    Raises ConfigError / DataError in one line naming the argument or file; returns the
    :class:`AskInput` with its notes (photos left out, geometry missing).
    """
    if not question or not question.strip():
        raise ConfigError("--question must not be empty")
    if bool(images) == (video is not None):
        raise ConfigError("give the photos (--images a.jpg b.jpg ...) or a video (--video clip.mp4 or a folder "
                          "of frames), one of them")
    notes: list[str] = []
    paths = image_paths(images or (), notes)
    if video is not None:
        paths = _video_views(video, cfg.data.video_frames, notes)
    # The views evaluation would pick (evenly spaced when there are more than data.num_views).
    kept = choose_views(len(paths), cfg.data.num_views, cfg.data.view_sampling, 0.0, False, np.random.default_rng(0))
    used = [paths[i] for i in kept]
    if len(used) < len(paths):
        dropped = [p for i, p in enumerate(paths) if i not in set(kept)]
        what = "frames" if video is not None else "photos"
        labels = dict(zip(paths, view_labels(paths), strict=True))
        notes.append(f"using {len(used)} of {len(paths)} {what} (the model takes data.num_views = "
                     f"{cfg.data.num_views}, chosen evenly): {_names(used, labels)}; left out: "
                     f"{_names(dropped, labels)}")
    geometry, source = None, "records"
    if blind:
        pass  # asked for: no vision or geometry tokens, nothing to report
    elif cfg.model.geometry.enabled:
        geometry, source = _geometry_of(cfg, cameras, paths, notes)
    elif cameras:
        notes.append("the model has no geometry encoder (model.geometry.enabled: false): --cameras is not used")
    load_views(used, cfg.data.image_size, cfg.data.resize_mode)  # decode now: a broken file fails before the model
    depths = _depths_beside(used, cameras, notes) if cfg.data.load_depth and not blind else None
    record = Record(images=used, question=question.strip(), answer="", situation=situation, id="ask",
                    task="ask", source="vqkit ask", line=0, depths=depths,
                    geometry=None if geometry is None else geometry.select(kept))
    dataset = RecordDataset([record], cfg.data, train=False, seed=cfg.train.seed,
                            depth_bins=cfg.model.geometry.depth_bins, max_depth=cfg.model.geometry.max_depth,
                            name="ask")
    return AskInput(sample=dataset[0], used=used, notes=notes, geometry_source=source)


def trained_for_layouts(cfg) -> bool | None:
    """Whether the model was trained on Stage 2 layout records: the first record of each
    ``data.train`` source has a ``roomplan`` target (True if any does); None when none can be read here."""
    found = []
    for source in cfg.data.train:
        try:
            files = expand_paths(source.path)
            first = next((obj for _, obj in iter_json_objects(files[0]) if isinstance(obj, dict)), None)
        except (DataError, OSError, IndexError):
            continue
        if first is not None:
            found.append(first.get("roomplan") is not None)
    return any(found) if found else None


def check_roomplan_model(cfg, model_name: str = "this model") -> None:
    """Refuse ``--roomplan`` for a model whose training data has no layouts (a Stage 1 model), instead
    of printing the empty room it would generate."""
    if trained_for_layouts(cfg) is False:
        sources = ", ".join(s.path for s in cfg.data.train)
        raise ConfigError(f"{model_name} is not a Stage 2 model: it was trained on question answering "
                          f"(data.train {sources} has no 'roomplan' layouts); --roomplan needs a model trained "
                          f"on layouts, e.g. with configs/stage2_demo.yaml")


def collate_ask(model, prepared: AskInput, *, blind: bool = False, cfg=None) -> dict:
    """The generate-mode batch of a prepared question (its geometry predicted in the model when
    ``prepared.geometry_source`` says so)."""
    cfg = copy.deepcopy(cfg if cfg is not None else model.config)
    cfg.model.geometry.source = prepared.geometry_source
    return Collator(model.tokenizer, cfg.model, cfg.data, mode="generate", blind=blind)([prepared.sample])


def build_batch(model, images: Sequence[str] | None, question: str, *, situation: str | None = None,
                blind: bool = False, cfg=None, cameras: str | Path | bool | None = None,
                video: str | None = None) -> dict:
    """A generate-mode batch of one record made of ``images`` (or ``video``) and ``question`` (see
    :func:`prepare_ask`)."""
    cfg = cfg if cfg is not None else model.config
    prepared = prepare_ask(cfg, images, question, situation=situation, blind=blind, cameras=cameras, video=video)
    return collate_ask(model, prepared, blind=blind, cfg=cfg)


def answer_prepared(model, prepared: AskInput, *, max_new_tokens: int | None = None, blind: bool = False,
                    cfg=None) -> str:
    """The model's answer to a prepared question (greedy unless ``cfg.eval`` samples)."""
    cfg = cfg if cfg is not None else model.config
    budget = max_new_tokens or cfg.eval.max_new_tokens
    return model.generate(collate_ask(model, prepared, blind=blind, cfg=cfg), max_new_tokens=budget,
                          **generation_kwargs(cfg))[0]


def layout_prepared(model, prepared: AskInput, *, max_new_tokens: int | None = None, blind: bool = False,
                    cfg=None):
    """A Stage 2 model's layout of a prepared set of photos: ``(room, problems, text)`` (see
    :func:`ask_roomplan`)."""
    cfg = cfg if cfg is not None else model.config
    budget = max_new_tokens or cfg.eval.roomplan_max_new_tokens
    text = model.generate(collate_ask(model, prepared, blind=blind, cfg=cfg), max_new_tokens=budget,
                          stop_on_repeated_line=True, **generation_kwargs(cfg))[0]
    room, problems = Room.from_text(text)
    if not text:
        problems = ["the model generated no text"]
    return room, problems, text


def ask(model, images: Sequence[str] | None, question: str, *, situation: str | None = None,
        max_new_tokens: int | None = None, blind: bool = False, cfg=None,
        cameras: str | Path | bool | None = None, video: str | None = None) -> str:
    """The model's answer to ``question`` about ``images`` or the frames of ``video`` (a video file or a
    folder of frames; greedy unless ``cfg.eval`` samples); ``cameras`` as in :func:`prepare_ask`, whose
    notes are logged as warnings."""
    cfg = cfg if cfg is not None else model.config
    prepared = prepare_ask(cfg, images, question, situation=situation, blind=blind, cameras=cameras, video=video)
    for note in prepared.notes:
        log.warning("%s", note)
    return answer_prepared(model, prepared, max_new_tokens=max_new_tokens, blind=blind, cfg=cfg)


def ask_roomplan(model, images: Sequence[str], *, question: str | None = None,
                 max_new_tokens: int | None = None, blind: bool = False, cfg=None,
                 cameras: str | Path | bool | None = None):
    """A Stage 2 model's layout of the room in ``images``: ``(room, problems, text)``.

    ``text`` is the generated layout text (budget ``eval.roomplan_max_new_tokens``; generation stops
    at the end token, the budget or a repeated element line, whose repeat is trimmed), ``room`` the
    :class:`vqkit.roomplan.Room` read from it by ``Room.from_text`` (what parsed) and ``problems``
    its parse problems (empty when every line parsed). ``question`` defaults to
    ``vqkit.roomplan.ROOMPLAN_QUESTION``, the prompt of the Stage 2 training records. A model trained
    without layouts (:func:`check_roomplan_model`) is refused.
    """
    cfg = cfg if cfg is not None else model.config
    check_roomplan_model(cfg)
    prepared = prepare_ask(cfg, images, question or ROOMPLAN_QUESTION, blind=blind, cameras=cameras)
    for note in prepared.notes:
        log.warning("%s", note)
    return layout_prepared(model, prepared, max_new_tokens=max_new_tokens, blind=blind, cfg=cfg)


@dataclass
class GroundingAnswer:
    """What ``vqkit ask --ground`` found: the ``box`` (None when the answer gives none) in ``frame``
    (``scene``: the cameras' frame; ``first_view``: the first photo's, when it has no camera geometry),
    the generated ``text`` and its parse ``problems``."""

    description: str
    text: str
    box: RoomObject | None
    frame: str
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON ``--out`` writes."""
        return {"description": self.description, "question": grounding_question(self.description), "text": self.text,
                "frame": self.frame, "box": None if self.box is None else box_to_dict(self.box),
                "corners": None if self.box is None else box_corners(self.box).round(4).tolist(),
                "problems": self.problems}

    def summary(self) -> str:
        """One line: the box's centre, size and yaw, or why there is none."""
        if self.box is None:
            return f"no box: {'; '.join(self.problems) or 'the model generated no text'}"
        b = self.box
        return (f"{b.category}: centre ({b.center[0]:.2f}, {b.center[1]:.2f}, {b.center[2]:.2f}) m, size "
                f"{b.size[0]:.2f} x {b.size[1]:.2f} x {b.size[2]:.2f} m (w x h x d), yaw "
                f"{np.degrees(b.yaw) % 180:.0f} deg, in the {self.frame.replace('_', ' ')} frame")


def ground_prepared(model, prepared: AskInput, description: str, *, max_new_tokens: int | None = None,
                    blind: bool = False, cfg=None) -> GroundingAnswer:
    """A grounding model's box of ``description`` in a prepared set of photos (:func:`ask_ground`)."""
    cfg = cfg if cfg is not None else model.config
    budget = max_new_tokens or cfg.eval.grounding_max_new_tokens
    text = model.generate(collate_ask(model, prepared, blind=blind, cfg=cfg), max_new_tokens=budget,
                          **generation_kwargs(cfg))[0]
    sample, frame_name = prepared.sample, "scene"
    frame = SCENE_FRAME
    if cfg.data.box_frame == "first_view":
        if sample.get("has_geometry"):
            frame = first_view_frame(sample["R"][0].numpy(), sample["t"][0].numpy())
        else:
            frame_name = "first_view"
    box, problems = read_box(text, frame)
    return GroundingAnswer(description, text, box, frame_name, problems if text else ["the model generated no text"])


def ask_ground(model, images: Sequence[str], description: str, *, max_new_tokens: int | None = None,
               blind: bool = False, cfg=None, cameras: str | Path | bool | None = None) -> GroundingAnswer:
    """The box of the object ``description`` names ("the pink bed") in ``images``: the grounding prompt
    (:func:`vqkit.roomplan.grounding.grounding_question`), budget ``eval.grounding_max_new_tokens``, the
    answer read as ``vqkit eval`` reads grounding answers (module docstring for the frame)."""
    cfg = cfg if cfg is not None else model.config
    prepared = prepare_ask(cfg, images, grounding_question(description), blind=blind, cameras=cameras)
    for note in prepared.notes:
        log.warning("%s", note)
    return ground_prepared(model, prepared, description, max_new_tokens=max_new_tokens, blind=blind, cfg=cfg)
