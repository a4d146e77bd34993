"""``vqkit prep conversations`` and ``vqkit prep export-conversations``: conversation files (LLaVA /
Qwen-VL-finetune) to vqkit records and back.

    summary = to_records("sqa3d_test_32frame.json", "data/sqa3d/test.jsonl", image_root="data/vgllm")
    summary = to_conversations("data/synth/val.jsonl", "exports/synth_val.json")

:func:`to_records` writes the records :mod:`vqkit.data.conversations` reads from a conversation file (one
per assistant turn, ``geom_token`` filled from ScanNet posed_images folders), so a large corpus is read
once (its posed frames and depth maps included) instead of at every start. :func:`to_conversations`
writes vqkit records in the Qwen-VL-finetune layout: one sample per record (a conversation's turns as
one sample), ``image`` / ``images`` / ``video``, the question with one ``<image>`` per view (one
``<video>`` for a video) after it, or where the record places the views, SQA3D's situation before the
question, and every other field (``geom_token``, ``depths``, ``task``, ``qtype``, ...) as it is, so
other trainers read the data and vqkit reads it back: records -> conversations -> records gives the
same records.

Paths are written as the input has them (relative to its image root): the output reads back with the
same root (``data.image_root``, a source's ``image_root``, or the output in the root's folder). Inputs
are never written; an existing output is refused unless ``overwrite``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqkit.data.conversations import VIEWS, is_conversation
from vqkit.data.record_files import iter_json_objects
from vqkit.data.schema import LoadReport, RecordContext, object_records, validate_record
from vqkit.data.video import parse_frame_ref
from vqkit.errors import ConfigError, DataError
from vqkit.utils.files import write_json_atomic, write_jsonl_atomic

RECORD_KEYS = ("images", "question", "answer", "answers", "turn", "conversation", "system")


@dataclass
class ConversionSummary:
    """What a conversion read and wrote."""

    out: str
    read: int = 0
    """Objects read (samples or records)."""
    written: int = 0
    """Objects written (records or samples)."""
    report: LoadReport = field(default_factory=LoadReport)
    notes: list[str] = field(default_factory=list)

    def text(self, what_in: str, what_out: str) -> str:
        lines = [f"{self.out}: {self.written} {what_out} from {self.read} {what_in}"]
        if self.report.num_skipped:
            lines.append(f"  skipped {self.report.num_skipped} bad {what_in} (first: {self.report.errors[0]})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _check_paths(src: Path, out: Path, overwrite: bool) -> None:
    if not src.is_file():
        raise DataError(f"{src}: input file not found")
    if out.resolve() == src.resolve():
        raise ConfigError(f"--out {out} is the input file: write the result somewhere else")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")


def _context(src: Path, image_root: str | None, allow_outside_root: bool, depth_bins: int) -> RecordContext:
    root = Path(image_root).expanduser() if image_root else src.parent
    return RecordContext(src, root, allow_outside_root, depth_bins, check_files=True)


def _objects(src: Path, ctx: RecordContext, on_error: str, summary: ConversionSummary, convert):
    """``convert(obj)`` of every object of ``src`` that converts (bad ones raise, or are counted)."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be raise or skip, got {on_error!r}")
    for line, obj in iter_json_objects(src):
        ctx.line = line
        summary.read += 1
        try:
            if isinstance(obj, DataError):
                raise obj
            yield convert(obj)
        except DataError as e:
            if on_error == "raise":
                raise
            summary.report.add_error(str(e))


def _root_note(src: Path, out: Path, image_root: str | None) -> list[str]:
    root = Path(image_root).expanduser().resolve() if image_root else src.parent.resolve()
    if out.parent.resolve() == root:
        return []
    return [f"paths are relative to {root}, as in the input: read {out.name} with data.image_root (or the "
            f"source's image_root) set to it"]


def to_records(src: str | os.PathLike, out: str | os.PathLike, *, image_root: str | None = None,
               allow_outside_root: bool = False, depth_bins: int = 16, video_frames: int = 32,
               on_error: str = "raise", overwrite: bool = False) -> ConversionSummary:
    """Write the vqkit records of every sample of the conversation file ``src`` to ``out`` (JSONL),
    each checked as training would load it. Returns what was read, written and skipped."""
    src, out = Path(src), Path(out)
    _check_paths(src, out, overwrite)
    ctx = _context(src, image_root, allow_outside_root, depth_bins)
    summary = ConversionSummary(str(out))

    def convert(obj):
        if not is_conversation(obj):
            raise ctx.error("conversations", "missing: not a conversation sample (this command reads "
                                             "LLaVA / Qwen-VL-finetune files)")
        records = object_records(obj, ctx, "conversations", video_frames)
        for record in records:
            validate_record(record, ctx)
        return records

    rows = [r for records in _objects(src, ctx, on_error, summary, convert) for r in records]
    summary.written = write_jsonl_atomic(out, rows)
    summary.notes += _root_note(src, out, image_root)
    return summary


def _placeholders(images: list[str]) -> tuple[dict[str, Any], str]:
    """The sample's media field and the placeholders its first user turn holds."""
    refs = [parse_frame_ref(p) for p in images]
    if all(r is not None for r in refs) and len({r[0] for r in refs}) == 1:
        return {"video": refs[0][0]}, "<video>"
    if len(images) == 1:
        return {"image": images[0]}, "<image>"
    return {"images": list(images)}, "<image>" * len(images)


def _user_text(question: str, placeholders: str, situation: str | None) -> str:
    """A record's question as a user turn: its situation first (as the prompt has it), the placeholders
    where the record places its views, else after the question."""
    if situation and situation not in question.replace(VIEWS, ""):
        question = f"{situation} {question}"
    if VIEWS in question:
        return question.replace(VIEWS, placeholders)
    return f"{question}\n{placeholders}"


def _sample(group: list[tuple[dict, Any]]) -> dict:
    """The conversation sample of one record, or of a conversation's turn records."""
    first, rec = group[0]
    media, placeholders = _placeholders(first["images"])
    turns = [{"from": "system", "value": first["system"]}] if first.get("system") is not None else []
    for k, (raw, r) in enumerate(group):
        text = _user_text(raw["question"], placeholders, raw.get("situation")) if k == 0 else raw["question"]
        turns.append({"from": "human", "value": text})
        turns.append({"from": "gpt", "value": r.target_text()})
    sample = {"id": rec.id, **media, "conversations": turns}
    sample.update({k: v for k, v in first.items() if k not in RECORD_KEYS and k not in sample})
    if len(group) > 1:
        sample["conversation"] = rec.conversation
        if any("answers" in raw for raw, _ in group):
            sample["answers"] = [raw.get("answers", [r.answer]) for raw, r in group]
    elif "answers" in first:
        sample["answers"] = first["answers"]
    return sample


def to_conversations(src: str | os.PathLike, out: str | os.PathLike, *, image_root: str | None = None,
                     allow_outside_root: bool = False, depth_bins: int = 16, on_error: str = "raise",
                     overwrite: bool = False) -> ConversionSummary:
    """Write the vqkit records of ``src`` as Qwen-VL-finetune conversation samples to ``out`` (a JSON array
    for ``.json``, else JSONL): one sample per record, a conversation's turn records as one sample."""
    src, out = Path(src), Path(out)
    _check_paths(src, out, overwrite)
    ctx = _context(src, image_root, allow_outside_root, depth_bins)
    summary = ConversionSummary(str(out))
    checked = list(_objects(src, ctx, on_error, summary, lambda obj: (obj, validate_record(obj, ctx))))
    samples, group = [], []
    for raw, rec in checked:
        if group and (rec.conversation is None or rec.conversation != group[-1][1].conversation):
            samples.append(_sample(group))
            group = []
        group.append((raw, rec))
    if group:
        samples.append(_sample(group))
    if out.suffix.lower() == ".json":
        write_json_atomic(out, samples)
        summary.written = len(samples)
    else:
        summary.written = write_jsonl_atomic(out, samples)
    summary.notes += _root_note(src, out, image_root)
    return summary
