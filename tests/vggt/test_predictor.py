"""Geometry from VGGT's heads in the model: strict head loading (bad keys named), the batch geometry by
hand, refusal of non-finite predictions, and VQModel predicting the geometry of records without it
from images and from cached features."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from helpers import TINY_PRETRAIN_ENCODER, tiny_pretrain_config, tiny_train_config
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vqkit.cameras import depth_histogram
from vqkit.config import EncoderConfig, GeometryConfig, config_from_dict
from vqkit.errors import CheckpointError, ConfigError, DataError
from vqkit.vggt.pose_encoding import extri_intri_to_pose_encoding
from vqkit.vggt.predicted_geometry import batch_geometry, box_masks
from vqkit.vggt.predictor import GeometryPredictor, cached_layer_outputs


def _rewrite(src, dst, *, drop: str | None = None, rename: tuple[str, str] | None = None, heads: dict | None = None):
    """A copy of a vqkit VGGT file with a part dropped, a key renamed or its description's head sizes changed."""
    state = load_file(str(src))
    with safe_open(str(src), "pt") as f:
        metadata = dict(f.metadata())
    if drop:
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
    if rename:
        state[rename[1]] = state.pop(rename[0])
    if heads:
        description = json.loads(metadata["vqkit_vggt"])
        description["heads"].update(heads)
        metadata["vqkit_vggt"] = json.dumps(description)
    save_file(state, str(dst), metadata=metadata)
    return dst


def _encoder(weights, **changes) -> EncoderConfig:
    return EncoderConfig(**{**TINY_PRETRAIN_ENCODER, **changes}, weights=str(weights))


def test_heads_load_strictly_from_the_encoder_weights(tiny_vggt_file):
    predictor = GeometryPredictor.from_encoder_config(_encoder(tiny_vggt_file))
    state = load_file(str(tiny_vggt_file))
    assert torch.equal(predictor.camera_head.pose_branch.fc2.weight, state["camera_head.pose_branch.fc2.weight"])
    assert predictor.layers == [0] and not any(p.requires_grad for p in predictor.parameters())
    assert not predictor.train().training  # frozen: always in eval mode


def test_bad_head_weights_are_named(tiny_vggt_file, tmp_path):
    no_depth = _rewrite(tiny_vggt_file, tmp_path / "a.safetensors", drop="depth_head.")
    with pytest.raises(CheckpointError, match=r"no depth_head\.\* keys, so it cannot predict geometry"):
        GeometryPredictor.from_encoder_config(_encoder(no_depth))
    renamed = _rewrite(tiny_vggt_file, tmp_path / "b.safetensors",
                       rename=("camera_head.trunk_norm.weight", "camera_head.trunk_norm.scale"))
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): camera_head\.trunk_norm\.weight; unexpected 1 "
                                              r"key\(s\): camera_head\.trunk_norm\.scale"):
        GeometryPredictor.from_encoder_config(_encoder(renamed))
    wrong_size = _rewrite(tiny_vggt_file, tmp_path / "c.safetensors", heads={"dpt_features": 16})
    with pytest.raises(CheckpointError, match=r"mis-shaped .* depth_head\.scratch\.layer1_rn\.weight"):
        GeometryPredictor.from_encoder_config(_encoder(wrong_size))
    with pytest.raises(CheckpointError, match=r"embed_dim: file 32, config 64"):
        GeometryPredictor.from_encoder_config(_encoder(tiny_vggt_file, embed_dim=64, num_heads=4))
    with pytest.raises(ConfigError, match="which need model.encoder.weights"):
        GeometryPredictor.from_encoder_config(EncoderConfig(**TINY_PRETRAIN_ENCODER))


def _pose_enc(H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two cameras (world-to-camera, fx = fy = 40 px) and their pose encoding for an H x W input."""
    c, s = math.cos(0.4), math.sin(0.4)
    R1 = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    extrinsics = torch.stack([torch.cat([torch.eye(3, dtype=torch.float64), torch.tensor([[0.0], [0.0], [1.0]],
                                                                                         dtype=torch.float64)], 1),
                              torch.cat([R1, torch.tensor([[2.0], [0.0], [0.0]], dtype=torch.float64)], 1)])[None]
    K = torch.tensor([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]], dtype=torch.float64).expand(1, 2, 3, 3)
    return extri_intri_to_pose_encoding(extrinsics, K, (H, W)), extrinsics


def test_batch_geometry_by_hand():
    H, W = 4, 6
    pose_enc, extrinsics = _pose_enc(H, W)
    depth = torch.full((1, 2, H, W), 0.5, dtype=torch.float64)
    depth[0, 1, :, :3] = 1.5
    boxes = torch.tensor([[[0, 0, 6, 4], [0, 0, 6, 2]]])  # view 1: only its top two rows are its own pixels
    mask = box_masks(boxes, torch.ones(1, 2, dtype=torch.bool), (H, W))
    out = batch_geometry(pose_enc, depth, torch.ones(1, 2, dtype=torch.bool), pixel_mask=mask,
                         median_depth_m=2.6, depth_bins=16, max_depth=10.0)
    own = torch.cat([depth[0, 0].flatten(), depth[0, 1, :2].flatten()])
    scale = 2.6 / own.median().item()  # the median of the views' own pixels lands at the prior
    assert out["scale"].item() == pytest.approx(scale)
    assert torch.allclose(out["R"][0, 0], torch.eye(3, dtype=torch.float64))
    R_rel = extrinsics[0, 1, :, :3]
    t_rel = extrinsics[0, 1, :, 3] - R_rel @ extrinsics[0, 0, :, 3]
    assert torch.allclose(out["R"][0, 1], R_rel, atol=1e-9)
    assert torch.allclose(out["t"][0, 1], t_rel * scale, atol=1e-9) and torch.all(out["t"][0, 0] == 0)
    assert torch.allclose(out["K"][0, 0], torch.tensor([[40.0, 0, 3], [0, 40.0, 2], [0, 0, 1]], dtype=torch.float64))
    want = [depth_histogram(depth[0, 0].numpy() * scale), depth_histogram(depth[0, 1, :2].numpy() * scale)]
    assert np.allclose(out["depth_hist"][0].numpy(), np.stack(want), atol=1e-6)
    metric = torch.full((1, 2, H, W), 3.0, dtype=torch.float64)  # depth maps fix the scale instead
    by_depth = batch_geometry(pose_enc, depth, torch.ones(1, 2, dtype=torch.bool), pixel_mask=mask,
                              reference_depth=metric)
    assert by_depth["scale"].item() == pytest.approx(3.0 / own.median().item())


def test_non_finite_predictions_are_refused_and_padding_is_not_looked_at():
    H, W = 4, 6
    pose_enc, _ = _pose_enc(H, W)
    depth = torch.ones(1, 2, H, W, dtype=torch.float64)
    view_mask = torch.ones(1, 2, dtype=torch.bool)
    bad = pose_enc.clone()
    bad[0, 1, 4] = float("nan")
    with pytest.raises(DataError, match=r"sample 'room7': the predicted camera of view 1 is not finite"):
        batch_geometry(bad, depth, view_mask, ids=["room7"])
    zero_fov = pose_enc.clone()
    zero_fov[0, 0, 8] = 0.0
    with pytest.raises(DataError, match="camera of view 0 is not finite or degenerate"):
        batch_geometry(zero_fov, depth, view_mask)
    inf = depth.clone()
    inf[0, 0, 3, 5] = float("inf")
    with pytest.raises(DataError, match="depth of view 0 is not finite and positive"):
        batch_geometry(pose_enc, inf, view_mask)
    boxes = torch.tensor([[[0, 0, 5, 3], [0, 0, 6, 4]]])  # the bad pixel is padding of view 0: not used
    batch_geometry(pose_enc, inf, view_mask, pixel_mask=box_masks(boxes, view_mask, (H, W)))
    batch_geometry(bad, depth, torch.tensor([[True, False]]))  # a padding view is never looked at


def test_cached_features_must_hold_the_heads_layers():
    feats = torch.randn(1, 2, 5, 8)  # two configured layers of 4 channels
    outputs = cached_layer_outputs(feats, [-1, 1], depth=3, wanted=[1, 2])
    assert outputs[0] is None and torch.equal(outputs[2], feats[..., :4]) and torch.equal(outputs[1], feats[..., 4:])
    with pytest.raises(DataError, match=r"needs aggregator layers \[0\], which the feature cache does not store"):
        cached_layer_outputs(feats, [-1, 1], depth=3, wanted=[0, 2])


def _vq_config(synth_dir, weights, source="auto", **data):
    d = tiny_train_config(synth_dir, synth_dir / "unused")
    d["model"]["encoder"] = {**TINY_PRETRAIN_ENCODER, "weights": str(weights)}
    d["model"]["geometry"]["source"] = source
    d["data"].update(view_dropout=0.0, **data)
    return config_from_dict(d)


def _batch(cfg, tokenizer, drop_geometry: tuple[int, ...] = (0,)):
    from vqkit.data.collate import Collator
    from vqkit.data.dataset import build_dataset

    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=0)
    samples = [dataset[i] for i in range(3)]
    for i in drop_geometry:
        samples[i]["has_geometry"] = False
    return samples, Collator(tokenizer, cfg.model, cfg.data)(samples)


def test_the_model_predicts_geometry_for_records_without_it(synth_dir, tiny_vggt_file):
    from vqkit.data.collate import Collator
    from vqkit.models.builder import build_model
    from vqkit.vggt.weights_file import vggt_from_file

    cfg = _vq_config(synth_dir, tiny_vggt_file)
    model = build_model(cfg).eval()
    assert "vggt heads" in model.parameter_counts() and model.parameter_counts()["vggt heads"][1] == 0
    samples, batch = _batch(cfg, model.tokenizer)
    assert batch["predict_geometry"].tolist() == [True, False, False] and batch["geom_mask"].all()
    per_sample = (batch["input_ids"] == model.image_pad_id).sum(1).tolist()
    assert per_sample == [4 + 2] * 3  # latents + a geometry token per view, predicted or not

    # the same tokens as the whole VGGT of the weights file, with its prediction given as the record's geometry
    vggt, _, _ = vggt_from_file(tiny_vggt_file)
    out = vggt(batch["images"][:1], view_mask=batch["view_mask"][:1])
    predicted = batch_geometry(out.pose_enc, out.depth, batch["view_mask"][:1],
                               pixel_mask=box_masks(batch["pixel_boxes"][:1], batch["view_mask"][:1], (56, 56)),
                               median_depth_m=cfg.model.geometry.median_depth_m)
    given = dict(batch, geometry=dict(batch["geometry"]), predict_geometry=torch.zeros(3, dtype=torch.bool))
    for key in ("R", "t", "K", "depth_hist"):
        given["geometry"][key] = batch["geometry"][key].clone()
        given["geometry"][key][0] = predicted[key][0].float()
    with torch.no_grad():
        auto = model.vision_tokens(batch, [0, 1, 2])
        manual = model.vision_tokens(given, [0, 1, 2])
        assert all(torch.allclose(a, m, atol=1e-5) for a, m in zip(auto, manual, strict=True))
        # from cached features (the demo-size aggregator's only layer is the heads' layer)
        cached = dict(batch, features=model.encode_views(batch["images"], batch["view_mask"]))
        del cached["images"]
        from_cache = model.vision_tokens(cached, [0, 1, 2])
        assert all(torch.allclose(a, c, atol=1e-5) for a, c in zip(auto, from_cache, strict=True))
    # source heads: every sample's geometry is predicted, the records' are not used
    heads = dataclasses.replace(cfg.model, geometry=dataclasses.replace(cfg.model.geometry, source="heads"))
    assert Collator(model.tokenizer, heads, cfg.data)(samples)["predict_geometry"].all()


def test_records_source_is_unchanged_and_a_model_without_heads_says_so(synth_dir, tiny_vggt_file):
    from vqkit.models.builder import build_model

    cfg = _vq_config(synth_dir, tiny_vggt_file, source="records")
    model = build_model(cfg)
    assert model.geometry_predictor is None and "vggt heads" not in model.parameter_counts()
    _, batch = _batch(cfg, model.tokenizer)
    assert batch["predict_geometry"].tolist() == [False] * 3 and batch["geom_mask"].tolist() == [False, True, True]
    auto = _vq_config(synth_dir, tiny_vggt_file)
    _, predicting = _batch(auto, model.tokenizer)
    with pytest.raises(ConfigError, match="has no VGGT heads: load it with load_model"):
        model.vision_tokens(predicting, [0])


def test_feature_cache_without_the_heads_layers_is_refused(synth_dir, tmp_path):
    from vqkit.models.builder import build_geometry_predictor
    from vqkit.train.encoder_pretrain import pretrain_encoder

    data = tiny_pretrain_config(synth_dir, tmp_path / "run", max_steps=1, save_every_steps=0)
    data["model"]["encoder"]["depth"] = 2  # the depth head reads layers 0 and 1, the projector only -1
    weights = pretrain_encoder(config_from_dict(data), progress=False).final_dir / "model.safetensors"
    cfg = _vq_config(synth_dir, weights, feature_cache=str(tmp_path / "cache"))
    cfg.model.encoder.depth = 2
    with pytest.raises(ConfigError, match=r"from aggregator layers \[0, 1\], but data.feature_cache stores only "
                                          r"model.encoder.layers \[1\] \(missing \[0\]\)"):
        build_geometry_predictor(cfg)
    cfg.data.feature_cache = None
    assert build_geometry_predictor(cfg).layers == [0, 1]
    assert GeometryConfig().source == "records"  # the default keeps records as they were
