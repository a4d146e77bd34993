"""``--model vqkit``: a saved vqkit model (``RUN/final``) as an lmms-eval model.

    LMMS_EVAL_PLUGINS=vqkit.lmms python -m lmms_eval --model vqkit \\
        --model_args pretrained=runs/demo/final --tasks vqkit_synth_val --include_path vqkit/lmms/tasks

``--model_args`` (comma-separated ``key=value``):

- ``pretrained``: the model folder (required);
- ``device``: ``auto`` (default: this process's GPU, else the CPU), ``cpu``, ``cuda:0``, ...; under
  ``accelerate launch`` each process takes its own device;
- ``blind``: ``true`` asks without the views (no vision or geometry tokens); a model trained blind
  (``data.blind``) is always asked blind;
- ``geometry_source``: ``records`` (the cameras a task's documents carry, as vqkit's tasks do; none
  otherwise), ``heads`` (predicted by the encoder's VGGT camera and depth heads) or ``auto`` (given
  cameras, else predicted); default the model's ``model.geometry.source``;
- ``num_views``: how many of a request's images or video frames the model reads, chosen evenly (default
  the model's ``data.num_views``); a video offers ``data.video_frames`` frames (32), or ``num_views`` when
  that is more;
- ``encoder_weights``: the VGGT weights file when the saved path does not exist on this machine.

``--batch_size N`` sets the generation batch (``auto``: the model's ``eval.batch_size``).

Requests: ``generate_until`` over a request's images (PIL images, image paths) and the frames of its
videos (decoded with PyAV, ``pip install 'vqkit[video]'``); the prompt is the request's text (``<image>``
placeholders removed: the model places its views itself), asked through
:func:`vqkit.eval.harness.answer_questions`, so the answers are the ones ``vqkit eval`` gives for the same
text, views and cameras. A document with ``cameras`` (a JSON list as ``vqkit synth``'s ``cameras.json``,
one per image: vqkit's tasks) gives the geometry tokens. Requests keep their order in batches, and
lmms-eval shards the documents over processes. ``loglikelihood`` and multi-round generation are not
supported: tasks whose output type is ``multiple_choice`` or multi-round need them.
"""

from __future__ import annotations

import atexit
import json
import logging
from collections.abc import Iterable
from typing import Any

from accelerate import Accelerator
from lmms_eval.api.model import lmms
from PIL import Image
from tqdm.auto import tqdm

from vqkit.data.cameras_file import geometry_from_cameras
from vqkit.data.schema import Geometry
from vqkit.data.video import is_video_file, video_frame_refs
from vqkit.errors import ConfigError, DataError
from vqkit.eval.harness import HarnessQuestion, answer_questions, generation_options
from vqkit.models.builder import load_model
from vqkit.utils import distributed
from vqkit.utils.runtime import resolve_device

log = logging.getLogger("vqkit.lmms")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"--model_args: expected true or false, got {value!r}")
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


class VQKit(lmms):
    """A saved vqkit model answering lmms-eval's requests (module docstring)."""

    def __init__(self, pretrained: str, device: str | None = "auto", batch_size: int | str = 1,
                 blind: bool | str = False, geometry_source: str | None = None, num_views: int | str | None = None,
                 encoder_weights: str | None = None, **unused: Any) -> None:
        super().__init__()
        unused.pop("max_batch_size", None)  # lmms-eval passes it to every model; batches here are fixed
        if unused:
            raise ConfigError(f"--model_args: unknown argument(s) {', '.join(sorted(unused))} for the vqkit model "
                              f"(pretrained, device, blind, geometry_source, num_views, encoder_weights)")
        self.accelerator = Accelerator()
        if self.accelerator.num_processes > 1:
            self._device = self.accelerator.device
            self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
            # lmms-eval never destroys the group accelerate joined; alive at exit, gloo can abort the
            # finished run (vqkit.utils.distributed).
            atexit.register(distributed.destroy, barrier=False)
        else:
            self._device = resolve_device(device or "auto")
        self.model = load_model(pretrained, device=self._device, encoder_weights=encoder_weights,
                                geometry_source=geometry_source)
        self.model.eval()
        if num_views is not None:
            data = self.model.config.data
            data.num_views = int(num_views)
            data.video_frames = max(data.video_frames, data.num_views)  # a video offers at least that many
        self.blind = _flag(blind)
        self.batch_size = self.model.config.eval.batch_size if str(batch_size) == "auto" else int(batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")

    @property
    def device(self):
        return self._device

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def _question(self, request) -> HarnessQuestion:
        context, _, doc_to_visual, doc_id, task, split = request.args
        doc = self.task_dict[task][split][doc_id]
        views = list(_views(doc_to_visual(doc), self.model.config.data.video_frames))
        if not views:
            raise DataError(f"task {task}, document {doc_id}: no images or video frames (vqkit answers "
                            f"questions about views)")
        return HarnessQuestion(text=context.replace("<image>", " ").strip(), views=views,
                               geometry=_geometry(doc, views, self.model.config, f"task {task}, document {doc_id}"))

    def generate_until(self, requests) -> list[str]:
        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}  # requests with the same generation options, in order
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        bar = tqdm(total=len(requests), desc="vqkit", disable=self.rank != 0)
        for indices in groups.values():
            generation = generation_options(self.model.config, requests[indices[0]].args[1])
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                texts = answer_questions(self.model, [self._question(requests[i]) for i in chunk], generation,
                                         batch_size=self.batch_size, blind=self.blind)
                for i, text in zip(chunk, texts, strict=True):
                    answers[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args[:2], text)
                bar.update(len(chunk))
        bar.close()
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError("the vqkit model answers generate_until requests only (loglikelihood is not "
                                  "supported: use a task with output_type generate_until)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the vqkit model answers single-round generate_until requests only")


def _views(visuals: Any, video_frames: int) -> Iterable[Any]:
    """A request's views in order: images as they are, each video as ``video_frames`` of its frames spread
    evenly over it (frame references, decoded when the sample is loaded)."""
    if visuals is None:
        return
    if isinstance(visuals, (str, Image.Image)):
        visuals = [visuals]
    for item in visuals:
        if isinstance(item, (list, tuple)):
            yield from _views(item, video_frames)
        elif isinstance(item, str) and is_video_file(item):
            yield from video_frame_refs(item, item, video_frames)
        elif isinstance(item, (str, Image.Image)):
            yield item
        else:
            raise DataError(f"unsupported visual {type(item).__name__} (vqkit takes images and videos)")


def _geometry(doc: dict, views: list, cfg, where: str) -> Geometry | None:
    """The cameras a document carries for its views (``cameras``: a JSON list, one per view), or None."""
    text = doc.get("cameras") if isinstance(doc, dict) else None
    if not text:
        return None
    cameras = json.loads(text) if isinstance(text, str) else text
    if len(cameras) != len(views):
        raise DataError(f"{where}: {len(cameras)} cameras for {len(views)} views")
    names = [f"view{k}" for k in range(len(cameras))]  # matched by position, whatever the files are called
    return geometry_from_cameras(dict(zip(names, cameras, strict=True)), names, cfg.model.geometry.depth_bins, where)
