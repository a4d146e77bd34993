"""``vqkit ask``: answer a question about any set of photos with a saved model.

The photos go through exactly the dataset's preprocessing (``vqkit.data.dataset.RecordDataset``:
VGGT resize/crop, ``data.num_views`` chosen evenly when more are given) and the prompt through the
collator, so the model sees what it saw in training.

Camera geometry (one geometry token per view): a model trained on records with ``geom_token`` (the
demo's, every synthetic record) answers best with it. ``--cameras FILE`` gives it as a list of
``{"image": name, "R", "t", "K", "depth_hist"}`` (the ``cameras.json`` that ``vqkit synth`` writes
next to a room's views); without ``--cameras`` such a file next to the photos is used when it lists
every photo, and ``--no-geometry`` leaves geometry out (then the prompt carries only the projector's
vision tokens, as for photos without poses).

    vqkit ask --model runs/demo/final --images a.jpg b.jpg c.jpg --question "How many chairs are there?"
    vqkit ask --model runs/stage2_demo/final --images a.jpg b.jpg --roomplan --out room.json

From Python: ``answer = ask(model, ["a.jpg", "b.jpg"], "How many chairs are there?")``, and for a
Stage 2 model ``room, problems, text = ask_roomplan(model, ["a.jpg", "b.jpg"])``.

``--roomplan`` asks Stage 2's question (``vqkit.roomplan.ROOMPLAN_QUESTION``, the prompt of the
synthetic and ARKit layout records) with the layout budget ``eval.roomplan_max_new_tokens``,
generation stopping at a repeated element like ``vqkit eval`` does for layout records, parses the
text with :meth:`vqkit.roomplan.Room.from_text` and writes ``room.to_capturedroom()`` (Apple's
CapturedRoom JSON, y-up) to ``--out`` or stdout; lines that did not parse are listed on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vqkit.data.collate import Collator
from vqkit.data.dataset import RecordDataset
from vqkit.data.schema import Record, cameras_beside, geometry_from_cameras, read_cameras
from vqkit.errors import ConfigError, DataError
from vqkit.eval.generate import generation_kwargs
from vqkit.roomplan import ROOMPLAN_QUESTION, Room


def _geometry_of(cameras: str | Path | bool | None, paths: list[str], depth_bins: int):
    """The photos' Geometry from ``cameras`` (see :func:`build_batch`), or None."""
    if cameras is False:
        return None
    if cameras is None:
        found = cameras_beside(paths)
        if found is None:
            return None
        source, by_name = found
    else:
        source, by_name = Path(cameras), read_cameras(cameras)
    return geometry_from_cameras(by_name, paths, depth_bins, source)


def build_batch(model, images: Sequence[str], question: str, *, situation: str | None = None,
                blind: bool = False, cfg=None, cameras: str | Path | bool | None = None) -> dict:
    """A generate-mode batch of one record made of ``images`` and ``question``.

    ``cameras``: a cameras file (see the module docstring), None to use a ``cameras.json`` next to the
    photos when it lists them all, False for no geometry.
    """
    cfg = cfg if cfg is not None else model.config
    if not question or not question.strip():
        raise ConfigError("--question must not be empty")
    if not images:
        raise ConfigError("give at least one image (--images a.jpg b.jpg ...)")
    paths = []
    for p in images:
        path = Path(p).expanduser()
        if not path.is_file():
            raise DataError(f"{p}: image not found")
        paths.append(str(path.resolve()))
    geometry = _geometry_of(cameras, paths, cfg.model.geometry.depth_bins)
    record = Record(images=paths, question=question.strip(), answer="", situation=situation, id="ask",
                    task="ask", source="<command line>", line=0, geometry=geometry)
    dataset = RecordDataset([record], cfg.data, train=False, seed=cfg.train.seed,
                            depth_bins=cfg.model.geometry.depth_bins, max_depth=cfg.model.geometry.max_depth,
                            name="ask")
    collator = Collator(model.tokenizer, cfg.model, cfg.data, mode="generate", blind=blind)
    return collator([dataset[0]])


def ask(model, images: Sequence[str], question: str, *, situation: str | None = None,
        max_new_tokens: int | None = None, blind: bool = False, cfg=None,
        cameras: str | Path | bool | None = None) -> str:
    """The model's answer to ``question`` about ``images`` (greedy unless ``cfg.eval`` samples);
    ``cameras`` as in :func:`build_batch`."""
    cfg = cfg if cfg is not None else model.config
    batch = build_batch(model, images, question, situation=situation, blind=blind, cfg=cfg, cameras=cameras)
    budget = max_new_tokens or cfg.eval.max_new_tokens
    return model.generate(batch, max_new_tokens=budget, **generation_kwargs(cfg))[0]


def ask_roomplan(model, images: Sequence[str], *, question: str | None = None,
                 max_new_tokens: int | None = None, blind: bool = False, cfg=None,
                 cameras: str | Path | bool | None = None):
    """A Stage 2 model's layout of the room in ``images``: ``(room, problems, text)``.

    ``text`` is the generated layout text (budget ``eval.roomplan_max_new_tokens``; generation stops
    at the end token, the budget or a repeated element line, whose repeat is trimmed), ``room`` the
    :class:`vqkit.roomplan.Room` read from it by ``Room.from_text`` (what parsed) and ``problems``
    its parse problems (empty when every line parsed). ``question`` defaults to
    ``vqkit.roomplan.ROOMPLAN_QUESTION``, the prompt of the Stage 2 training records.
    """
    cfg = cfg if cfg is not None else model.config
    batch = build_batch(model, images, question or ROOMPLAN_QUESTION, blind=blind, cfg=cfg, cameras=cameras)
    budget = max_new_tokens or cfg.eval.roomplan_max_new_tokens
    text = model.generate(batch, max_new_tokens=budget, stop_on_repeated_line=True, **generation_kwargs(cfg))[0]
    room, problems = Room.from_text(text)
    if not text:
        problems = ["the model generated no text"]
    return room, problems, text
