"""The data section: record sources, views, prompts and batches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from vqkit.config.checks import check

_RATE = re.compile(r"^(?P<path>.+)%(?P<rate>\d+(?:\.\d+)?)$")


@dataclass
class SourceConfig:
    """One corpus: a JSON/JSONL file or glob of vqkit records or conversation samples, and its share of
    the mix (``weight``, or VG-LLM's ``rate``: a share of the source's own samples)."""

    path: str = ""
    """JSON array or JSONL file, or a glob of them. A ``%N`` suffix (VG-LLM's ``name%rate``,
    ``llava.json%50``) sets ``rate``."""
    weight: float = 1.0
    """Relative sampling weight when several sources are mixed."""
    rate: float | None = None
    """Percent of this source's samples per training epoch (VG-LLM's ``name%rate``: 50 = half of them,
    drawn anew each epoch; above 100 repeats them). With rates the epoch is the sum of every source's
    share (a source without one gives all its samples once) and ``weight`` must stay 1."""
    name: str | None = None
    """Label for logs and metrics; default = the file stem."""
    format: Literal["auto", "records", "conversations"] = "auto"
    """``records`` (vqkit's format), ``conversations`` (LLaVA / Qwen-VL-finetune samples,
    docs/data_formats.md) or ``auto``: each object by its content."""
    image_root: str | None = None
    """Root of this source's relative media paths (VG-LLM's per-dataset data_path); default
    ``data.image_root``, else the file's folder."""
    join: list[str] = field(default_factory=list)
    """More record files (or globs) read into this source, so that their records of the same views are
    turns of one sample with ``path``'s (``data.turns``): e.g. a room's questions and its grounding
    questions read with one pass over its views."""

    def __post_init__(self):
        match = _RATE.match(self.path or "")
        if match is not None:
            check(self.rate is None, f"data source {self.path}: give the rate as a %N suffix or rate:, not both")
            self.path, self.rate = match["path"], float(match["rate"])
        check(bool(self.path), "data source needs a path (a .json/.jsonl file or a glob)")
        check(self.weight > 0, f"data source {self.path}: weight must be > 0, got {self.weight}")
        check(self.rate is None or self.rate > 0,
              f"data source {self.path}: rate must be > 0 (percent of its samples), got {self.rate}")
        check(self.rate is None or self.weight == 1.0,
              f"data source {self.path}: set a weight or a rate, not both (a rate is a share of its own samples)")


@dataclass
class DataConfig:
    """Records on disk -> datasets -> batches."""

    train: list[SourceConfig] = field(default_factory=list)
    """Training sources, mixed by weight."""
    val: list[SourceConfig] = field(default_factory=list)
    """Held-out sources for periodic evaluation and `vqkit eval` defaults."""
    image_root: str | None = None
    """Root for relative image paths; None = the folder of each JSON/JSONL file."""
    allow_outside_root: bool = False
    """Allow image paths that resolve outside the root (refused by default)."""
    on_error: Literal["raise", "skip"] = "raise"
    """Bad records: raise (with file, line, field) or skip (counted and reported)."""
    num_views: int = 8
    """Views per sample: more are subsampled, fewer are kept as they are."""
    view_sampling: Literal["spread", "uniform", "first", "random"] = "spread"
    """How to pick num_views of more (a video's frames, a posed_images scan): ``spread`` = evenly spaced in
    evaluation, one at random from each of num_views equal stretches in training (seeded); ``uniform`` =
    evenly spaced always; ``first``; ``random`` = any num_views in training, evenly spaced in evaluation."""
    video_frames: int = 32
    """The frames a video (or a folder of frames) gives a record, spread evenly over it; num_views of
    them are then chosen as above."""
    view_dropout: float = 0.0
    """Training only: drop each view with this probability (always keeps at least one)."""
    geometry_dropout: float = 0.0
    """Training only: leave out a record's camera geometry with this probability, so the model also answers
    photos without poses: with ``model.geometry.source: auto`` the encoder's heads predict it (phone photos),
    else the sample has no geometry tokens (``vqkit ask --no-geometry``)."""
    image_size: int = 448
    """Target image width (and height in crop mode); a multiple of 14."""
    resize_mode: Literal["crop", "pad"] = "crop"
    """VGGT preprocessing: 'crop' resizes width to image_size and centre-crops height to at most
    image_size; 'pad' resizes the long side to image_size and pads to a square with white."""
    max_length: int = 512
    """Token budget per sample; truncation cuts question text, never vision tokens or the answer."""
    turns: int = 1
    """Training only: up to this many questions about the same views (records with the same images) in
    one sample: the first turn as the prompt template lays it out, the others as text-only follow-ups
    after it, each masked from the others so it sees the first turn's prompt (question and views) and
    itself only. The views are read once for several answers. Turns that would pass max_length are left out."""
    packing: bool = False
    """Training only: lay each micro-batch's samples one after another in one row of tokens instead of
    padding them (views, vision and geometry tokens, turns and labels stay each sample's own; positions
    restart with every sample and attention never crosses samples: flash-attention's varlen path on CUDA,
    SDPA per sample elsewhere). The step's loss and gradients are the unpacked step's; the padding is gone."""
    packing_buffer: int = 64
    """With train.tokens_per_batch: samples looked ahead when filling micro-batches (first-fit-decreasing;
    more fills them better, and moves samples further from the shuffled order)."""
    prompt_template: str = "chat"
    """'chat' = the tokenizer's chat template; otherwise a format string with {question}, <image>
    and {answer} (optionally {situation}), e.g. "{question}\\n<image>\\n{answer}" (question before the views)."""
    system_prompt: str | None = None
    """Optional system message for chat templates."""
    load_depth: bool = False
    """Load depth maps (16-bit PNG, mm) with the images (geometry tokens use depth_hist instead)."""
    load_semantics: bool = False
    """Load the records' semantic maps (8-bit PNG class indices) with the images (`vqkit pretrain-encoder`'s
    semantic objective sets it)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    persistent_workers: bool = False
    """Keep DataLoader workers alive between epochs."""
    blind: bool = False
    """Text-only prompts (no vision block, so no vision or geometry tokens): trains and evaluates the
    blind baseline that shows what vision adds."""
    feature_cache: str | None = None
    """Folder written by `vqkit cache-features`; when set, training reads encoder features from it
    instead of images."""
    box_frame: Literal["scene", "first_view"] = "scene"
    """The frame of a grounding answer's box and of the cells' 3D points (``model.projector.point_embed``):
    ``scene`` (the frame of the record's camera poses) or ``first_view`` (turned and shifted about the
    vertical so that the sample's first view stands at the origin looking along +y, x to its right; needs
    camera geometry). Evaluation turns a predicted box back into the scene frame
    (``vqkit.roomplan.grounding``)."""
    box_step_cm: int = 1
    """Grounding records: the answer's positions and sizes rounded to this many centimetres."""
    exclude_qtypes: list[str] = field(default_factory=list)
    """Leave out the records of these qtypes from every source (the demo's blind baseline leaves out
    the training rooms' ``describe`` question, which only the views can answer)."""

    def __post_init__(self):
        check(self.image_size % 14 == 0,
              f"data.image_size must be a multiple of 14 (VGGT patch size), got {self.image_size}; "
              f"try {max(14, round(self.image_size / 14) * 14)}")
        check(self.num_views >= 1, "data.num_views must be >= 1")
        check(self.video_frames >= 1, "data.video_frames must be >= 1")
        check(0.0 <= self.view_dropout < 1.0, "data.view_dropout must be in [0, 1)")
        check(0.0 <= self.geometry_dropout <= 1.0, "data.geometry_dropout must be in [0, 1]")
        check(self.max_length >= 16, "data.max_length must be >= 16")
        check(self.turns >= 1, "data.turns must be >= 1")
        check(self.packing_buffer >= 1, "data.packing_buffer must be >= 1")
        check(1 <= self.box_step_cm <= 100, f"data.box_step_cm must be 1..100 centimetres, got {self.box_step_cm}")
        if self.prompt_template != "chat":
            check("{question}" in self.prompt_template and "<image>" in self.prompt_template
                  and "{answer}" in self.prompt_template,
                  "data.prompt_template must be 'chat' or contain {question}, <image> and {answer}")
            check(self.prompt_template.rstrip().endswith("{answer}"),
                  "data.prompt_template must end with {answer} (the label span)")
