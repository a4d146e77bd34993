"""``vqkit prep geometry``: give records without camera geometry the geometry VGGT's camera and depth
heads predict from their views, keeping everything else.

    report = fill_geometry("data/seed/val.jsonl", "data/seed/val_geom.jsonl", model="runs/demo/final")

For every record whose ``geom_token`` is missing or null (all records with ``replace``), the record's
views go through the whole VGGT of ``model`` (aggregator + heads) once per distinct view set, and
:func:`vqkit.vggt.predicted_geometry_from_predictions` turns the prediction into a ``geom_token`` in
the record conventions: ``R``, ``t`` world-to-camera relative to view 0 (the first image), ``K`` of
each image file as stored, ``depth_hist``. The scale (docs/design.md section 8) comes from the
record's metric depth maps when it has ``depths``, else from the median-depth prior. Every other
field keeps its value and place (key order), plus ``geom_token_from`` saying where the geometry came
from (the model, and whether the scale came from depth maps or the prior). A prediction that is not
finite is refused: that record keeps its ``geom_token``, and the report counts it.

``model`` is a vqkit model folder (its ``model.encoder`` weights, image size, resize mode, depth bins
and prior) or a whole-VGGT weights file, folder or hub id (``RUN/encoder/model.safetensors`` of
``vqkit pretrain-encoder``, the official checkpoint). The output is written atomically and may not
be the input: the input is never touched.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vqkit.data.images import load_depth, load_views, pad_to_common
from vqkit.data.schema import iter_json_objects, load_records
from vqkit.errors import ConfigError, DataError
from vqkit.utils.files import write_jsonl_atomic, write_text_atomic
from vqkit.vggt import DEFAULT_MEDIAN_DEPTH_M, geometry_from_predictions


@dataclass
class PredictorSettings:
    """How views become the VGGT's input and its predictions a ``geom_token``."""

    image_size: int = 518
    resize_mode: str = "crop"
    depth_bins: int = 16
    max_depth: float = 10.0
    median_depth_m: float = DEFAULT_MEDIAN_DEPTH_M


@dataclass
class FillReport:
    """What :func:`fill_geometry` did."""

    records: int = 0
    filled: int = 0
    kept: int = 0
    """Records that had geometry and kept it (without ``replace``)."""
    refused: int = 0
    """Records whose prediction was not finite: written unchanged."""
    view_sets: int = 0
    scale_from_depth: int = 0
    scale_from_prior: int = 0
    seconds: float = 0.0
    first_refusal: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self, out: str | Path) -> str:
        text = (f"{out}: {self.records} records, {self.filled} given predicted geometry ({self.view_sets} view sets; "
                f"scale from depth maps {self.scale_from_depth}, from the median-depth prior {self.scale_from_prior}), "
                f"{self.kept} kept their own, {self.refused} refused (prediction not finite) in {self.seconds:.1f} s")
        if self.first_refusal:
            text += f"; first refusal: {self.first_refusal}"
        return text


def load_predictor(model: str | Path, device=None, overrides: list[str] | None = None):
    """(VGGT with camera and depth heads, its :class:`PredictorSettings`) from a vqkit model folder or
    a whole-VGGT weights source (module docstring)."""
    from vqkit.vggt.predictor import missing_heads
    from vqkit.vggt.weights_file import (
        check_encoder_matches,
        describe_vggt_file,
        vggt_from_file,
    )

    folder = Path(model)
    if (folder / "config.yaml").is_file() and (folder / "trainable.safetensors").is_file():
        from vqkit.config.io import load_config

        cfg = load_config(folder / "config.yaml", overrides)
        if not cfg.model.encoder.weights:
            raise ConfigError(f"{folder}: its model.encoder has no weights (a random aggregator has no trained "
                              f"heads); pass a VGGT weights file as --model, or --set model.encoder.weights=FILE")
        check_encoder_matches(describe_vggt_file(cfg.model.encoder.weights), cfg.model.encoder)
        source = cfg.model.encoder.weights
        geo = cfg.model.geometry
        settings = PredictorSettings(cfg.data.image_size, cfg.data.resize_mode, geo.depth_bins, geo.max_depth,
                                     geo.median_depth_m)
    else:
        if overrides:
            raise ConfigError("--set applies to a vqkit model folder's config; --model is a weights file here")
        source, settings = str(model), None
    vggt, info, _ = vggt_from_file(source, device=device)
    missing = missing_heads(info)
    if missing:
        raise ConfigError(f"{source}: no {' or '.join(p + '.*' for p in missing)} keys, so it cannot predict "
                          f"geometry (it holds {', '.join(info.parts)}); use vqkit pretrain-encoder's "
                          f"RUN/encoder/model.safetensors or the official checkpoint")
    if settings is None:
        settings = PredictorSettings(image_size=info.image_size or 518, resize_mode=info.resize_mode or "crop")
    return vggt, settings


@torch.no_grad()
def predict_record_geometry(vggt, record, settings: PredictorSettings, where: str):
    """The :class:`vqkit.vggt.PredictedGeometry` of one record's views (all of them, in order);
    raises DataError when the prediction is not finite."""
    images, plans, shifts = load_views(record.images, settings.image_size, settings.resize_mode,
                                       fields=[f"images[{i}]" for i in range(len(record.images))])
    reference = None
    if record.depths is not None:
        depths = [load_depth(path, plan, field=f"depths[{i}]")
                  for i, (path, plan) in enumerate(zip(record.depths, plans, strict=True))]
        reference = torch.stack(pad_to_common(depths, fill=0.0, shifts=shifts)[0])
    device = next(vggt.parameters()).device
    out = vggt(torch.stack(images)[None].to(device))
    return geometry_from_predictions(out.pose_enc[0], out.depth[0], plans, shifts, reference_depth=reference,
                                     median_depth_m=settings.median_depth_m, depth_bins=settings.depth_bins,
                                     max_depth=settings.max_depth, where=where)


def fill_geometry(records: str | Path, out: str | Path, model: str | Path, *, replace: bool = False,
                  overwrite: bool = False, overrides: list[str] | None = None, image_size: int | None = None,
                  median_depth_m: float | None = None, image_root: str | None = None,
                  allow_outside_root: bool = False, device=None, progress: bool = True) -> FillReport:
    """Write ``out``: the records of ``records`` with predicted geometry where they have none (module
    docstring). ``image_size`` / ``median_depth_m`` override the model's; ``image_root`` resolves
    relative paths as ``data.image_root`` does (default: the input file's folder)."""
    from tqdm.auto import tqdm

    started = time.time()
    src, dst = Path(records), Path(out)
    if not src.is_file():
        raise DataError(f"{src}: record file not found")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"--out {dst} is the input file: write the records with geometry to another file "
                          f"(the input is never overwritten)")
    if dst.exists() and not overwrite:
        raise ConfigError(f"--out {dst} already exists; choose another file or pass --overwrite")
    vggt, settings = load_predictor(model, device=device, overrides=overrides)
    if image_size is not None:
        settings = dataclasses.replace(settings, image_size=image_size)
    if median_depth_m is not None:
        settings = dataclasses.replace(settings, median_depth_m=median_depth_m)
    parsed = load_records(str(src), image_root=image_root, allow_outside_root=allow_outside_root,
                          depth_bins=settings.depth_bins)
    raw = [obj for _, obj in iter_json_objects(src)]
    report = FillReport(records=len(raw))
    cache: dict[tuple, dict | DataError] = {}
    rows = []
    pairs = list(zip(raw, parsed, strict=True))
    for obj, record in tqdm(pairs, desc="prep geometry", disable=not progress, dynamic_ncols=True):
        if record.geometry is not None and not replace:
            report.kept += 1
            rows.append(obj)
            continue
        key = (tuple(record.images), tuple(record.depths or ()))  # the depth maps fix the scale
        if key not in cache:
            try:
                predicted = predict_record_geometry(vggt, record, settings, record.where)
                cache[key] = {"geom_token": predicted.as_geom_token(),
                              "geom_token_from": {"model": str(model), "scale": predicted.scale_source,
                                                  "metres_per_unit": round(predicted.scale, 6)}}
                report.view_sets += 1
            except DataError as e:
                cache[key] = e
        result = cache[key]
        if isinstance(result, DataError):
            report.refused += 1
            report.first_refusal = report.first_refusal or str(result)
            rows.append(obj)
            continue
        report.filled += 1
        source = result["geom_token_from"]["scale"]
        report.scale_from_depth += source == "depth"
        report.scale_from_prior += source == "prior"
        rows.append({**obj, **result})  # geom_token replaced where it was (null), else added at the end
    _write(dst, rows)
    if dst.resolve().parent != src.resolve().parent and image_root is None:
        report.notes.append(f"relative image paths in {dst} still refer to {src.parent}: train on it with "
                            f"data.image_root={src.parent}")
    report.seconds = time.time() - started
    return report


def _write(path: Path, rows: list[dict]) -> None:
    """JSONL, or a JSON array for a ``.json`` path; atomically."""
    if path.suffix.lower() == ".json":
        import json

        write_text_atomic(path, "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    else:
        write_jsonl_atomic(path, rows, ensure_ascii=False)
