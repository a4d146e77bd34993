"""Records and photos without camera geometry: what a model does with them, and what to say about it.

A model with a geometry encoder reads one geometry token per view (docs/design.md section 3). Records
without ``geom_token`` (and photos without a cameras file) get those tokens only when the model can
predict the geometry with VGGT's camera and depth heads (``model.geometry.source`` auto or heads, and
the heads in ``model.encoder.weights``); otherwise they are answered without geometry tokens, which a
model trained on posed views was never shown. ``vqkit eval`` and ``vqkit ask`` say which, and every
suggestion they make is one that works for the model at hand (:func:`how_to_give_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vqkit.data.schema import expand_paths, iter_json_objects
from vqkit.errors import ConfigError, DataError

# Written once: the recipe that serves photos without cameras, and the offline path for records.
AUTO_RECIPE = ("train with an encoder that has VGGT's camera and depth heads and model.geometry.source: auto "
               "(the demo's recipe: configs/demo.yaml, its encoder from configs/demo_encoder.yaml)")
PREP_GEOMETRY = ("vqkit prep geometry --records IN --model VGGT_WEIGHTS --out OUT gives the records the "
                 "cameras a VGGT with heads predicts (e.g. RUN/encoder/model.safetensors of vqkit "
                 "pretrain-encoder --config configs/camera_depth_heads.yaml)")


def trained_with_geometry(cfg) -> bool | None:
    """Whether the model was trained on records with camera geometry: the first record of each
    ``data.train`` source has a ``geom_token`` (True if any does) and the model has a geometry encoder;
    None when no training record can be read here."""
    if not cfg.model.geometry.enabled or cfg.data.blind:
        return False
    found = []
    for source in cfg.data.train:
        try:
            first = next((obj for _, obj in iter_json_objects(expand_paths(source.path)[0])
                          if isinstance(obj, dict)), None)
        except (DataError, OSError, IndexError):
            continue
        if first is not None:
            found.append(first.get("geom_token") is not None)
    return any(found) if found else None


def heads_available(cfg) -> tuple[bool, str]:
    """Whether ``model.encoder.weights`` holds VGGT's camera and depth heads, and if not, why (one line)."""
    from vqkit.vggt.predictor import geometry_heads_available

    return geometry_heads_available(cfg.model.encoder)


def effective_source(cfg) -> tuple[str, str]:
    """The ``model.geometry.source`` a model can use, and why it differs from the config's ('' when not):
    ``auto`` without heads falls back to ``records``; ``heads`` without them is a ConfigError."""
    source = cfg.model.geometry.source
    if source == "records" or not cfg.model.geometry.enabled:
        return "records", ""
    available, why = heads_available(cfg)
    if available:
        return source, ""
    if source == "heads":
        raise ConfigError(f"model.geometry.source is heads but the geometry cannot be predicted: {why}; "
                          f"use source: records, or {AUTO_RECIPE}")
    return "records", why


def how_to_give_geometry(cfg, *, photos: bool) -> str:
    """What gives this model's inputs camera geometry, for a model whose source is ``records``: the
    heads it already has (``--set model.geometry.source=auto``), else a cameras file (``photos``) or
    ``vqkit prep geometry`` (records), or training with the heads."""
    available, why = heads_available(cfg)
    if available:
        return (f"--set model.geometry.source=auto predicts it with the camera and depth heads of "
                f"{cfg.model.encoder.weights}")
    given = ("--cameras FILE gives the photos' poses (--no-geometry says answering without them is intended)"
             if photos else PREP_GEOMETRY)
    return f"this model cannot predict it ({why}): {given}; to serve inputs without cameras, {AUTO_RECIPE}"


@dataclass
class GeometryReport:
    """What an evaluation does about its records without camera geometry."""

    examples: int
    """Records evaluated."""
    without: int
    """Of those, records without ``geom_token``."""
    handling: str
    """'predicted' (VGGT's heads), 'none' (no geometry tokens), 'all_predicted' (source heads: every
    record's geometry predicted), 'not_used' (blind, or no geometry encoder)."""
    text: str
    """One line for the user ('' when every record has geometry and nothing else needs saying)."""
    warning: bool
    """The records are answered without geometry tokens by a model trained with them."""

    def as_info(self) -> dict:
        return {"examples": self.examples, "without_geometry": self.without, "handling": self.handling,
                "note": self.text or None}


def records_without_geometry(dataset, n: int) -> int | None:
    """How many of the first ``n`` examples of an evaluation dataset have no camera geometry (None when
    the dataset is not made of vqkit records)."""
    parts = getattr(dataset, "datasets", [dataset])
    if not all(hasattr(p, "records") for p in parts):
        return None
    records = [r for p in parts for r in p.records][:n]
    return sum(r.geometry is None for r in records)


def _predicted_scale(cfg) -> str:
    """How the predicted depth gets its metres: the records' depth maps when the model reads them (VGGT's
    depth is scale-free), else the median-depth prior."""
    prior = f"a {cfg.model.geometry.median_depth_m:g} m median depth (model.geometry.median_depth_m)"
    if cfg.data.load_depth:
        return f"depth scaled to the records' depth maps (data.load_depth), to {prior} where a record has none"
    return f"depth histograms at the scale of {prior}"


def _no_points(cfg) -> str:
    """What a model whose cells carry 3D points loses on records without poses."""
    if cfg.model.projector.point_embed:
        return "; their cells carry no 3D points (model.projector.point_embed needs the records' poses)"
    return ""


def geometry_report(cfg, dataset, n: int, *, blind: bool, source: str,
                    why_not_predicted: str = "") -> GeometryReport | None:
    """The :class:`GeometryReport` of evaluating ``n`` examples of ``dataset`` with geometry ``source``
    (what the model was loaded with; ``why_not_predicted``: why an ``auto`` config fell back to records).
    None when the records cannot be counted."""
    without = records_without_geometry(dataset, n)
    if without is None:
        return None
    if blind or cfg.data.blind or not cfg.model.geometry.enabled:
        return GeometryReport(n, without, "not_used", "", False)
    if source == "heads":
        return GeometryReport(n, without, "all_predicted",
                              f"model.geometry.source heads: the camera geometry of all {n} records is predicted "
                              f"by VGGT's camera and depth heads ({cfg.model.encoder.weights})", False)
    if without == 0:
        return GeometryReport(n, 0, "predicted" if source == "auto" else "none", "", False)
    counted = f"{without} of {n} records have no camera geometry (geom_token)"
    if source == "auto":
        return GeometryReport(n, without, "predicted",
                              f"{counted}: predicted by VGGT's camera and depth heads ({cfg.model.encoder.weights}; "
                              f"{_predicted_scale(cfg)}){_no_points(cfg)}", False)
    trained = trained_with_geometry(cfg)
    if why_not_predicted:
        done = f"answered without geometry tokens (model.geometry.source auto cannot predict: {why_not_predicted})"
    else:
        done = "answered without geometry tokens (model.geometry.source records)"
    if not trained:
        return GeometryReport(n, without, "none", f"{counted}: {done}", False)
    return GeometryReport(n, without, "none",
                          f"{counted}: {done}, which this model, trained on records with camera geometry, was "
                          f"never shown, so expect lower scores on them; {how_to_give_geometry(cfg, photos=False)}",
                          True)


__all__ = ["AUTO_RECIPE", "GeometryReport", "effective_source", "geometry_report", "heads_available",
           "how_to_give_geometry", "records_without_geometry", "trained_with_geometry"]
