"""``vqkit probe-features``: how well a frozen aggregator's features tell each object's colour and
presence in the synthetic rooms (:mod:`vqkit.eval.feature_probe`), without training the demo model.

The config's encoder (``model.encoder``, its ``weights`` and ``layers``) encodes every room once
into a feature cache of its own (``DATA/feature_caches/<key>``, reused by later probes of the same
encoder); the probe then trains on one view set per training room and is scored on the validation
rooms, with targets from each room's ``layout.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from vqkit.data.feature_cache import FeatureCache, cache_spec, record_views, spec_key
from vqkit.data.schema import load_records
from vqkit.errors import DataError
from vqkit.eval.feature_probe import fit_probe, object_targets
from vqkit.synth.benchmark import use_synthetic_data
from vqkit.tools.cache_writer import build_feature_cache
from vqkit.vggt.aggregator import feature_shape


def probe_cache_dir(cfg, data_dir: str | Path) -> Path:
    """The probe's cache folder for this encoder: one per feature spec, so nothing else's is replaced."""
    return Path(data_dir) / "feature_caches" / spec_key(cache_spec(cfg))[:12]


def _rooms(path: str, cache: FeatureCache, cfg, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [rooms, S, P, C] in the cache dtype, targets [rooms, categories]) of the first
    record of every room in ``path``."""
    feats, targets, seen = [], [], set()
    for rec in load_records(path, image_root=cfg.data.image_root, allow_outside_root=cfg.data.allow_outside_root,
                            check_files=False):
        if rec.scene_id in seen:
            continue
        seen.add(rec.scene_id)
        layout_path = data_dir / "scenes" / str(rec.scene_id) / "layout.json"
        if not layout_path.is_file():
            raise DataError(f"{rec.where}: field 'scene_id': no layout at {layout_path} "
                            f"(probe-features needs the rooms of `vqkit synth`)")
        views, _ = record_views(rec, cfg.data)
        feats.append(cache.features(rec, views)[0])
        targets.append(object_targets(json.loads(layout_path.read_text())))
    if not feats:
        raise DataError(f"{path}: no records")
    shapes = {tuple(f.shape) for f in feats}
    if len(shapes) > 1:
        raise DataError(f"{path}: rooms have different view counts or grids {sorted(shapes)}; "
                        f"probe-features needs one shape")
    return torch.stack(feats), torch.tensor(targets)


def format_scores(scores: dict) -> str:
    """:func:`probe_features`' scores in one line, each beside its always-the-commonest baseline."""
    return (f"object colour {100 * scores['colour_accuracy']:.1f}% (always the commonest: "
            f"{100 * scores['colour_chance']:.1f}%), presence {100 * scores['presence_accuracy']:.1f}% "
            f"({100 * scores['presence_chance']:.1f}%) on {scores['val_rooms']} validation rooms; "
            f"{scores['seconds'] / 60:.1f} min")


def probe_features(cfg, data_dir: str | Path = "data/synth", *, cache_dir: str | Path | None = None,
                   epochs: int = 30, seed: int = 0, progress: bool = True, log=print) -> dict:
    """Encode the synthetic rooms in ``data_dir`` with ``cfg``'s encoder (cached in ``cache_dir``, default
    :func:`probe_cache_dir`), fit the probe on the training rooms, score it on the validation rooms;
    returns the scores with what produced them."""
    data_dir = Path(data_dir)
    use_synthetic_data(cfg, data_dir, tokenizer=False)
    if not cfg.data.val:
        raise DataError(f"{data_dir}: no val.jsonl (expected the layout of `vqkit synth`)")
    started = time.time()
    cache_dir = build_feature_cache(cfg, cache_dir or probe_cache_dir(cfg, data_dir), progress=progress)
    cache = FeatureCache(cache_dir, cfg)
    train = _rooms(cfg.data.train[0].path, cache, cfg, data_dir)
    val = _rooms(cfg.data.val[0].path, cache, cfg, data_dir)
    encoded_s = time.time() - started
    enc = cfg.model.encoder
    shape = feature_shape(enc, cfg.data.image_size, cfg.data.image_size)
    log(f"probe-features: {len(train[0])} training and {len(val[0])} validation rooms, features "
        f"{tuple(train[0].shape[1:])} from {enc.weights or f'a random aggregator (seed {enc.seed})'}")

    def report(epoch, loss, colour, presence):
        log(f"epoch {epoch:3d}/{epochs}: loss {loss:.3f}, val colour {100 * colour:.1f}%, "
            f"presence {100 * presence:.1f}%")

    scores = fit_probe(train, val, shape.grid, num_special_tokens=shape.patch_start_idx,
                       epochs=epochs, seed=seed, log=report)
    return {**scores, "encoder_weights": enc.weights, "layers": list(enc.layers), "depth": enc.depth,
            "embed_dim": enc.embed_dim, "image_size": cfg.data.image_size, "data": str(data_dir),
            "cache": str(cache_dir), "encode_s": encoded_s, "seconds": time.time() - started, "seed": seed}
