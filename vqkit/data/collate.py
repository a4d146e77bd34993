"""Samples -> a batch for ``VQModel``: images padded to a common shape, prompts, labels.

The prompt is built from pieces that are tokenized separately and concatenated, so the label span
is exactly the answer's tokens plus the end token, and the vision block is exactly
``<|vision_start|>`` + N x ``<|image_pad|>`` + ``<|vision_end|>`` with
N = ``vision_token_count(model_cfg, num_views, has_geometry, image_hw)`` (the batch's padded image
size matters only for a patch-merger projector, whose token count follows the patch grid):

- ``data.prompt_template: chat``: the tokenizer's chat template renders an optional system message
  and the user turn ``[situation + " "] + question + "\\n" + vision block`` with the generation
  prompt; the answer follows, ended by the template's end-of-turn token (``<|im_end|>`` for Qwen).
- any other template, e.g. ``"{question}\\n<image>\\n{answer}"``: literal text,
  ``{question}``, optional ``{situation}`` (without it the situation is prepended to the question),
  ``<image>`` = the vision block, ``{answer}`` last; the answer ends with the tokenizer's eos.

A sample may place its views inside its question (``vision_at``, a conversation file's placeholder:
the text before them, the vision block, the text after, each on its own line) and bring its own system
message (``system``: the chat template's system turn, a literal template's first line), which then
replaces ``data.system_prompt``.

Truncation to ``data.max_length`` removes tokens from the start of the situation, then of the
question (the text before the views, then after them), and never touches the template's own tokens,
the vision block or the answer (``batch["num_truncated"]`` counts samples it shortened; a sample that
still does not fit is kept whole and counted in ``batch["num_overlong"]``). Blind mode (a text-only
baseline) has no vision block at all.

Training batches are right-padded with labels (-100 everywhere but the answer and its end token);
generation batches (``mode="generate"``) hold only the prompt, left-padded, ``labels = None``.

A training sample with ``turns`` (a conversation's later turns, or with ``data.turns`` other questions
about the same views) gets them as follow-up turns after its answer, laid out as the template lays out
a text-only turn, each answer labelled, whole turns only while they fit in ``max_length``; the batch
then carries ``turn_of`` [B, L] (0 for the first turn's prompt, k for turn k), from which ``VQModel``
builds the mask that keeps the turns from seeing each other (``vqkit.models.llm_attention.turn_attention_mask``).

A packing collator (``pack=True``: ``data.packing`` in training) lays the batch's samples one after another in
one row instead of padding them (:func:`vqkit.data.packing.pack_tokens`: ``position_ids`` and ``cu_seqlens``
say where each sample starts); the vision half is the same.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from vqkit.data.images import UNLABELLED
from vqkit.data.packing import pack_tokens
from vqkit.errors import ConfigError
from vqkit.tokenizer import answer_end_token_id, vision_token_count, vision_token_ids

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import DataConfig, ModelConfig

log = logging.getLogger("vqkit.data")

IGNORE_INDEX = -100
# Markers substituted into the chat template, then split out again: plain ASCII so no template
# escapes or trims them.
_TEXT = "@@VQKIT_TEXT@@"
_VISION = "@@VQKIT_VISION@@"
_AFTER = "@@VQKIT_AFTER@@"
_PLACEHOLDER = re.compile(r"(\{question\}|\{situation\}|<image>|\{answer\})")
# Distinct texts a collator remembers the tokens of (a few MB).
_TOKEN_CACHE_SIZE = 100_000


class Collator:
    """``collate_fn`` for :class:`vqkit.data.dataset.RecordDataset` samples (picklable for workers).

    Args:
        tokenizer: from ``vqkit.tokenizer.load_tokenizer`` (has the vision and pad tokens).
        model_cfg: sizes the vision block (projector latents, geometry tokens).
        data_cfg: prompt_template, system_prompt, max_length.
        mode: "train" (prompt + answer, labels, right padding) or "generate" (prompt, left padding).
        blind: no vision block (text-only baseline).
        pack: (train mode) the samples in one row, no padding (module docstring; ``data.packing``).

    Returns a dict: ``images`` [B, S, 3, H, W], ``view_mask`` [B, S],
    ``geometry`` {R [B,S,3,3], t [B,S,3], K [B,S,3,3], depth_hist [B,S,bins], image_hw (H, W)},
    ``geom_mask`` [B] (samples with geometry tokens), ``predict_geometry`` [B] (those whose geometry
    the model predicts, :meth:`predicts_geometry`), ``pixel_boxes`` [B, S, 4] (each view's image
    inside the padded input, x0 y0 x1 y1), ``input_ids`` / ``attention_mask`` / ``labels`` [B, L], ``meta`` (list),
    ``num_truncated``, ``num_overlong``, ``num_skipped`` (ints), optional ``depths`` [B, S, H, W] and
    ``semantics`` [B, S, H, W] (class indices, UNLABELLED outside the images) and ``features`` [B, S, P, C].
    Packed, the token tensors are [1, T] and ``position_ids`` [1, T], ``cu_seqlens`` [B + 1] join them.
    """

    def __init__(self, tokenizer, model_cfg: ModelConfig, data_cfg: DataConfig, mode: str = "train",
                 blind: bool = False, pack: bool = False):
        if mode not in ("train", "generate"):
            raise ConfigError(f"Collator mode must be 'train' or 'generate', got {mode!r}")
        if pack and mode != "train":
            raise ConfigError("only training batches are packed (Collator mode 'train')")
        self.pack = pack
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self.data_cfg = data_cfg
        self.mode = mode
        self.blind = blind
        self.chat = data_cfg.prompt_template == "chat"
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise ConfigError("data.prompt_template is 'chat' but the tokenizer has no chat template; "
                              "set a template such as \"{question}\\n<image>\\n{answer}\"")
        self.vision = vision_token_ids(tokenizer)
        self.end_id = answer_end_token_id(tokenizer, self.chat)
        if tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token; load it with vqkit.tokenizer.load_tokenizer")
        self.pad_id = int(tokenizer.pad_token_id)
        self._pieces_cache: dict[tuple, list[tuple[str, Any]]] = {}
        self._token_cache: dict[str, tuple[int, ...]] = {}
        self._warned_overlong = False

    # ------------------------------------------------------------------ prompt layout

    def _encode(self, text: str) -> list[int]:
        """The text's token ids, remembered: a benchmark's questions and answers repeat (templated
        questions, one-word answers), and with ``data.turns`` a sample tokenizes up to 16 of them, which
        was a tenth of the demo's training step on 2 cores."""
        if not text:
            return []
        ids = self._token_cache.get(text)
        if ids is None:
            if len(self._token_cache) >= _TOKEN_CACHE_SIZE:  # free text (ScanQA) repeats less: stay bounded
                self._token_cache.clear()
            ids = self._token_cache[text] = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        return list(ids)

    def _layout(self, followup: bool = False, inline: str | None = None, system: str | None = None
                ) -> list[tuple[str, Any]]:
        """The prompt as a list of (kind, value): ("ids", [..]) template tokens, ("text",), ("after",),
        ("situation",), ("vision",). ``followup``: a later turn of a multi-turn sample (``data.turns``, a
        conversation), laid out as the template lays out a text-only turn, without a system prompt or BOS.
        ``inline``: the views inside the question (a record's ``vision_at``): ``start`` (before all of it)
        or ``middle`` (between "text" and "after"). ``system``: the sample's system message (else
        ``data.system_prompt``). Cached: only the text and vision sizes vary per sample."""
        blind = self.blind or followup
        key = (blind, followup, None if blind else inline, None if followup else system)
        if key in self._pieces_cache:
            return self._pieces_cache[key]
        if len(self._pieces_cache) > 1000:  # per-sample system messages: stay bounded
            self._pieces_cache.clear()
        system = None if followup else system or self.data_cfg.system_prompt
        inline = None if blind else inline
        question = {None: _TEXT, "start": f"{_VISION}\n{_AFTER}",
                    "middle": f"{_TEXT}\n{_VISION}\n{_AFTER}"}[inline]
        pieces: list[tuple[str, Any]] = []
        if self.chat:
            content = _TEXT if blind else question if inline else f"{_TEXT}\n{_VISION}"
            messages = [{"role": "user", "content": content}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            if rendered.count(_TEXT) != (inline != "start") or rendered.count(_VISION) != (0 if blind else 1):
                raise ConfigError("the tokenizer's chat template does not keep the user message verbatim; "
                                  "use a prompt_template such as \"{question}\\n<image>\\n{answer}\"")
            if followup:  # the end-of-turn token ends the previous answer; chat templates put a newline after it
                rendered = "\n" + rendered
            pieces = self._split_markers(rendered)
        else:
            template = self.data_cfg.prompt_template
            prompt = template[: template.rindex("{answer}")]
            bos = self.tokenizer.bos_token_id
            if bos is not None and getattr(self.tokenizer, "add_bos_token", False) and not followup:
                pieces.append(("ids", [int(bos)]))
            if system:
                pieces.append(("ids", self._encode(f"{system}\n")))
            for part in _PLACEHOLDER.split(prompt):
                if part == "{question}":
                    pieces += self._split_markers(question)
                elif part == "{situation}":
                    pieces.append(("situation", None))
                elif part == "<image>":
                    if not blind and not inline:
                        pieces.append(("vision", None))
                elif part:
                    pieces.append(("ids", self._encode(part)))
        self._pieces_cache[key] = pieces
        return pieces

    def _split_markers(self, text: str) -> list[tuple[str, Any]]:
        """Pieces of a rendered prompt: its text, vision and after markers as slots, the rest as tokens."""
        kinds = {_TEXT: "text", _VISION: "vision", _AFTER: "after"}
        pattern = "(" + "|".join(re.escape(m) for m in kinds) + ")"
        return [(kinds[part], None) if part in kinds else ("ids", self._encode(part))
                for part in re.split(pattern, text) if part]

    def _segments(self, pieces: list[tuple[str, Any]], question: str, situation: str | None,
                  vision_at: int | None = None) -> dict[str, list[int]]:
        """The tokens of a turn's text slots, keyed as in ``pieces`` (the situation goes before the
        question when the layout has no slot of its own for it; the question splits at ``vision_at``
        when the layout places the views inside it)."""
        kinds = {kind for kind, _ in pieces}
        text, after = question, None
        if "after" in kinds:
            text, after = question[:vision_at].strip(), question[vision_at:].strip()
        if situation and "situation" not in kinds:  # before the question's first words
            if "text" in kinds:
                text = f"{situation} {text}"
            else:
                after = f"{situation} {after}"
        segs: dict[str, list[int]] = {"text": self._encode(text)}
        if after is not None:
            segs["after"] = self._encode(after)
        if "situation" in kinds:
            segs["situation"] = self._encode(situation or "")
        return segs

    def _assemble(self, pieces: list[tuple[str, Any]], segs: dict[str, list[int]], n_vis: int = 0) -> list[int]:
        """A turn's prompt tokens: the layout's pieces filled with its text slots and vision block."""
        ids: list[int] = []
        for kind, value in pieces:
            if kind == "ids":
                ids += value
            elif kind == "vision":
                ids += self.vision.block(n_vis)
            else:
                ids += segs[kind]
        return ids

    def _followups(self, turns: Sequence[dict[str, Any]], room: int) -> tuple[list[int], list[int], list[int]]:
        """Token ids, labels and turn numbers (2, 3, ...) of a multi-turn sample's later turns, as many
        whole turns as fit in ``room`` tokens."""
        pieces = self._layout(followup=True)
        ids: list[int] = []
        labels: list[int] = []
        turn_of: list[int] = []
        for number, turn in enumerate(turns, start=2):
            segs = self._segments(pieces, turn["question"], turn.get("situation"))
            prompt = self._assemble(pieces, segs)
            answer = self._encode(turn["answer"]) + [self.end_id]
            if len(ids) + len(prompt) + len(answer) > room:
                break
            ids += prompt + answer
            labels += [IGNORE_INDEX] * len(prompt) + answer
            turn_of += [number] * (len(prompt) + len(answer))
        return ids, labels, turn_of

    def encode_sample(self, question: str, situation: str | None, answer: str | None, num_views: int,
                      has_geometry: bool, image_hw: tuple[int, int] | None = None,
                      turns: Sequence[dict[str, Any]] = (), vision_at: int | None = None,
                      system: str | None = None) -> dict[str, Any]:
        """Token ids of one sample. ``image_hw``: the batch's (padded) image size, which sizes the
        vision block of a patch-merger projector (``vision_token_count``). ``turns``: more
        question / situation / answer dicts about the same views (training, ``data.turns``), appended
        as follow-up turns while they fit in ``data.max_length``. Returns ``input_ids``, ``labels``
        (None in generate mode), ``num_vision`` (placeholders), ``truncated`` and ``overlong`` flags.
        ``vision_at``: where the views go in the question (None: where the template puts them);
        ``system``: the sample's system message."""
        inline = None
        if vision_at is not None and question[vision_at:].strip():
            inline = "middle" if question[:vision_at].strip() else "start"
        pieces = self._layout(inline=inline, system=system)
        n_vis = 0 if self.blind else vision_token_count(self.model_cfg, num_views, has_geometry, image_hw)
        # Truncatable segments, in the order they give up tokens (situation first, from its start).
        segs = self._segments(pieces, question, situation, vision_at)
        answer_ids: list[int] = []
        if self.mode == "train":
            if answer is None or not answer.strip():
                raise ConfigError("a training sample needs a non-empty answer")
            answer_ids = self._encode(answer) + [self.end_id]
        fixed = sum(len(v) if k == "ids" else n_vis + 2 if k == "vision" else 0 for k, v in pieces)
        total = fixed + sum(len(v) for v in segs.values()) + len(answer_ids)
        overflow = total - self.data_cfg.max_length
        truncated = overlong = False
        if overflow > 0:
            truncated = True
            for name in ("situation", "text", "after"):
                if name in segs and overflow > 0:
                    cut = min(overflow, len(segs[name]))
                    segs[name] = segs[name][cut:]
                    overflow -= cut
            overlong = overflow > 0
        ids = self._assemble(pieces, segs, n_vis)
        labels = None
        turn_of = [0] * len(ids)  # the first turn's prompt: what every turn sees
        if self.mode == "train":
            labels = [IGNORE_INDEX] * len(ids) + answer_ids
            ids = ids + answer_ids
            turn_of += [1] * len(answer_ids)
            if turns:
                more_ids, more_labels, more_turns = self._followups(turns, self.data_cfg.max_length - len(ids))
                ids, labels, turn_of = ids + more_ids, labels + more_labels, turn_of + more_turns
        return {"input_ids": ids, "labels": labels, "turn_of": turn_of, "num_vision": n_vis,
                "truncated": truncated, "overlong": overlong}

    # ------------------------------------------------------------------ batch

    def predicts_geometry(self, sample: dict[str, Any]) -> bool:
        """Whether the model predicts this sample's geometry (``model.geometry.source``: heads always,
        auto when the record has none; never blind or without a geometry encoder)."""
        geo = self.model_cfg.geometry
        if self.blind or not geo.enabled or geo.source == "records":
            return False
        return geo.source == "heads" or not sample["has_geometry"]

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = self._views(samples)
        image_hw = batch["geometry"]["image_hw"]  # what the model's encoder and projector will see
        predict = [self.predicts_geometry(s) for s in samples]
        enc = [self.encode_sample(s["question"], s.get("situation"), s.get("answer"), s["R"].shape[0],
                                  bool(s["has_geometry"]) or p, image_hw, s.get("turns", ()),
                                  s.get("vision_at"), s.get("system"))
               for s, p in zip(samples, predict, strict=True)]
        batch["predict_geometry"] = torch.tensor(predict, dtype=torch.bool)
        batch["geom_mask"] = batch["geom_mask"] | batch["predict_geometry"]  # samples with geometry tokens
        batch.update(self._tokens(enc))
        num_overlong = sum(e["overlong"] for e in enc)
        if num_overlong and not self._warned_overlong:
            self._warned_overlong = True
            log.warning("%d sample(s) exceed data.max_length=%d even without question text (vision block + "
                        "answer are longer); they are kept whole. Raise data.max_length.",
                        num_overlong, self.data_cfg.max_length)
        meta = []
        for s, e in zip(samples, enc, strict=True):
            m = dict(s["meta"])
            m["answer"] = s.get("answer")
            m["num_vision_tokens"] = e["num_vision"]
            meta.append(m)
        batch.update(meta=meta, num_truncated=sum(e["truncated"] for e in enc), num_overlong=num_overlong,
                     num_skipped=sum("replaced_from" in s["meta"] for s in samples))
        return batch

    @staticmethod
    def _views(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_views(samples)

    def planned(self, question: str, situation: str | None, answer: str | None, num_views: int,
                has_geometry: bool, image_hw: tuple[int, int] | None = None,
                turns: Sequence[dict[str, Any]] = (), vision_at: int | None = None,
                system: str | None = None) -> dict[str, Any]:
        """A training sample's :meth:`encode_sample` before its views are loaded: its tokens and labels as
        this collator lays it out (what ``train.tokens_per_batch`` counts). ``image_hw`` sizes a patch
        merger's vision block (its batch's padded size: the sample's own, or a bound)."""
        predict = self.predicts_geometry({"has_geometry": has_geometry})
        hw = image_hw or (self.data_cfg.image_size, self.data_cfg.image_size)
        return self.encode_sample(question, situation, answer, num_views, has_geometry or predict, hw, turns,
                                  vision_at, system)

    def _tokens(self, enc: list[dict[str, Any]]) -> dict[str, Any]:
        """input_ids, attention_mask and labels of encoded samples, padded to the longest (or packed)."""
        if self.pack:
            return pack_tokens(enc)
        B = len(enc)
        L = max(len(e["input_ids"]) for e in enc)
        input_ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        attention = torch.zeros(B, L, dtype=torch.long)
        multi_turn = any(max(e["turn_of"]) > 1 for e in enc)
        turn_of = torch.zeros(B, L, dtype=torch.long) if multi_turn else None
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long) if self.mode == "train" else None
        for b, e in enumerate(enc):
            n = len(e["input_ids"])
            # Right padding for training (labels line up with positions); left padding for
            # generation so every prompt ends at the last column where new tokens are appended.
            sl = slice(0, n) if self.mode == "train" else slice(L - n, L)
            input_ids[b, sl] = torch.tensor(e["input_ids"], dtype=torch.long)
            attention[b, sl] = 1
            if labels is not None:
                labels[b, sl] = torch.tensor(e["labels"], dtype=torch.long)
            if turn_of is not None:
                turn_of[b, sl] = torch.tensor(e["turn_of"], dtype=torch.long)
        out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        if turn_of is not None:
            out["turn_of"] = turn_of
        return out


def collate_views(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Images (or cached features), depths and camera geometry of dataset samples, padded to the
    batch's largest view count and image size (centred on white, as VGGT pads; K follows): the
    vision half of a :class:`Collator` batch (``vqkit pretrain-encoder`` batches are only this)."""
    B = len(samples)
    S = max(s["images"].shape[0] if "images" in s else s["features"].shape[0] for s in samples)
    if "images" in samples[0]:
        H = max(s["images"].shape[-2] for s in samples)
        W = max(s["images"].shape[-1] for s in samples)
        images = torch.zeros(B, S, 3, H, W)
    else:
        H, W = samples[0].get("image_hw", (0, 0))
        images = None
    view_mask = torch.zeros(B, S, dtype=torch.bool)
    bins = samples[0]["depth_hist"].shape[-1]
    R = torch.zeros(B, S, 3, 3)
    t = torch.zeros(B, S, 3)
    K = torch.zeros(B, S, 3, 3)
    hist = torch.zeros(B, S, bins)
    geom_mask = torch.zeros(B, dtype=torch.bool)
    depths = torch.zeros(B, S, H, W) if any("depths" in s for s in samples) else None
    semantics = None
    if any("semantics" in s for s in samples):
        semantics = torch.full((B, S, H, W), UNLABELLED, dtype=torch.long)
    boxes = torch.zeros(B, S, 4, dtype=torch.long) if all("pixel_box" in s for s in samples) else None
    features = None
    if "features" in samples[0]:
        P, C = samples[0]["features"].shape[-2:]
        features = torch.zeros(B, S, P, C, dtype=samples[0]["features"].dtype)
    for b, s in enumerate(samples):
        V = s["R"].shape[0]
        view_mask[b, :V] = True
        dy = dx = 0
        if images is not None:
            h, w = s["images"].shape[-2:]
            dy, dx = (H - h) // 2, (W - w) // 2
            if (h, w) != (H, W):
                images[b, :V] = 1.0
            images[b, :V, :, dy:dy + h, dx:dx + w] = s["images"]
            if depths is not None and "depths" in s:
                depths[b, :V, dy:dy + h, dx:dx + w] = s["depths"]
            if semantics is not None and "semantics" in s:
                semantics[b, :V, dy:dy + h, dx:dx + w] = s["semantics"]
        if boxes is not None:  # the view's own pixels (inside its image), moved by this batch's padding
            h, w = s["images"].shape[-2:] if "images" in s else (H, W)
            box = torch.minimum(s["pixel_box"][:V].clamp(min=0), torch.tensor([w, h, w, h]))
            boxes[b, :V] = box + torch.tensor([dx, dy, dx, dy])
        if features is not None:
            features[b, :V] = s["features"]
            if depths is not None and "depths" in s:  # padded by the dataset to the cached views' size
                h, w = s["depths"].shape[-2:]
                depths[b, :V, :h, :w] = s["depths"]
        if s["has_geometry"]:
            geom_mask[b] = True
            R[b, :V] = s["R"]
            t[b, :V] = s["t"]
            Kb = s["K"].clone()
            Kb[:, 0, 2] += dx
            Kb[:, 1, 2] += dy
            K[b, :V] = Kb
        hist[b, :V] = s["depth_hist"]
    batch: dict[str, Any] = {"view_mask": view_mask, "geom_mask": geom_mask,
                             "geometry": {"R": R, "t": t, "K": K, "depth_hist": hist, "image_hw": (int(H), int(W))}}
    for key, value in (("images", images), ("depths", depths), ("semantics", semantics), ("features", features),
                       ("pixel_boxes", boxes)):
        if value is not None:
            batch[key] = value
    return batch
