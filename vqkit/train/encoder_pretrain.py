"""``vqkit pretrain-encoder``: train VGGT (the ``model.encoder`` aggregator with camera and depth heads,
the point head optional) on posed views with depth, with VGGT's losses, and write its weights in the
official layout.

    result = pretrain_encoder(load_config("configs/encoder_pretrain_demo.yaml"))
    # RUN/encoder/model.safetensors: aggregator.*, camera_head.*, depth_head.* (+ a description)
    # then: vqkit train --config configs/demo.yaml --set model.encoder.weights=RUN/encoder/model.safetensors

The run is a :class:`vqkit.train.loop.TrainingLoop` like ``vqkit train``'s (run folder, progress,
``metrics.jsonl`` / TensorBoard, atomic checkpoints, exact ``--resume auto``, SIGTERM, accelerate /
DeepSpeed): only the model, the data and the step differ.

- **Data** (:mod:`vqkit.data.posed_views`): the distinct view sets of ``data.train`` with poses and
  depth maps (the synthetic rooms have both), ``data.num_views`` views at ``data.image_size``.
- **Model** (:class:`VGGTObjective`): VGGT built from ``model.encoder`` (random from
  ``model.encoder.seed``, or ``model.encoder.weights``) and the head sizes of ``encoder_pretrain``;
  its forward normalises each sample's scene as VGGT does and returns the losses
  (:mod:`vqkit.models.vggt.losses`): ``camera_weight * camera + depth_weight * depth [+ point]``.
- **Step**: :func:`vqkit.train.step.train_step` with samples as the unit (every sample weighs the same,
  across micro-batches and ranks); AdamW with the aggregator at ``train.lr`` and the heads at
  ``train.proj_lr``, warmup and cosine as ``vqkit train``.
- **Held-out**: every ``train.eval_every_steps``, :func:`vqkit.eval.geometry.evaluate_geometry` on the
  first ``train.eval_samples`` view sets of ``data.val`` (rotation and translation-direction errors of
  the relative poses, depth AbsRel).
- **Output**: ``RUN/encoder/model.safetensors`` (:func:`vqkit.models.vggt.weights_file.save_vggt_file`),
  with ``config.yaml`` and ``trainer_state.json`` beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from vqkit.config.io import save_config
from vqkit.config.schema import Config
from vqkit.models.vggt import VGGT
from vqkit.models.vggt.losses import (
    camera_loss,
    depth_loss,
    gt_pose_encoding,
    normalize_scene,
    point_loss,
)
from vqkit.models.vggt.weights import load_aggregator_weights
from vqkit.models.vggt.weights_file import describe_vggt_file, save_vggt_file
from vqkit.train.loop import LogWindow, StepOutcome, TrainingLoop, TrainResult
from vqkit.train.optim import build_optimizer
from vqkit.train.step import train_step

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
"""RUN/encoder/: the trained weights (model.safetensors), their config and step."""
WEIGHTS_FILE = "model.safetensors"


def head_sizes(cfg: Config) -> dict:
    """The :class:`VGGT` head arguments ``encoder_pretrain`` asks for (camera and depth heads always)."""
    p = cfg.encoder_pretrain
    return {"enable_camera": True, "enable_depth": True, "enable_point": p.point_head,
            "dpt_layers": p.dpt_layers, "dpt_features": p.dpt_features,
            "dpt_out_channels": list(p.dpt_out_channels), "camera_trunk_depth": p.camera_trunk_depth,
            "camera_num_heads": p.camera_num_heads}


INITIAL_FOV = 1.1
"""Field of view (radians, ~63 degrees) a randomly initialised camera head starts every view at."""


def start_fields_of_view(model: VGGT, fov: float = INITIAL_FOV, iterations: int = 4) -> None:
    """Start a random camera head's field-of-view estimates at ``fov``: the two rows of its last layer
    that give them are zeroed and their bias adds ``fov / iterations`` per refinement iteration. The
    fields of view go through a ReLU, so a random head whose estimate is negative gets no gradient
    there and never learns it (seen: fov_w stuck at 0 after a few steps)."""
    with torch.no_grad():
        model.camera_head.pose_branch.fc2.weight[7:] = 0.0
        model.camera_head.pose_branch.fc2.bias[7:] = fov / iterations


def build_vggt(cfg: Config) -> VGGT:
    """VGGT for pretraining: the aggregator of ``model.encoder`` (random from its seed, or its weights)
    and heads sized by ``encoder_pretrain``; heads the weights file holds start from it, the others
    from random (:func:`start_fields_of_view`)."""
    enc = dataclasses.replace(cfg.model.encoder, frozen=False)
    sizes = head_sizes(cfg)
    if enc.weights:
        info = describe_vggt_file(enc.weights)
        wanted = ["camera_head", "depth_head"] + (["point_head"] if sizes["enable_point"] else [])
        if info.has("aggregator", *wanted) and not (info.has("point_head") and not sizes["enable_point"]):
            return VGGT.from_config(enc, **sizes)
        log.info("%s: starting the aggregator from it and the heads from random (it holds %s)",
                 enc.weights, ", ".join(info.parts))
        model = VGGT.from_config(dataclasses.replace(enc, weights=None), **sizes)
        load_aggregator_weights(model.aggregator, enc.weights)
    else:
        model = VGGT.from_config(enc, **sizes)
    start_fields_of_view(model)
    return model


class VGGTObjective(nn.Module):
    """VGGT and its training losses: ``forward(batch)`` -> ``{"loss": total, "loss_camera": ..., ...}``.

    ``batch``: :func:`vqkit.data.posed_views.collate_view_sets` (images, view_mask, geometry R / t / K
    of the input images, depths in metres). Only samples with poses and at least one valid depth pixel
    are supervised. ``train_aggregator=False`` freezes the aggregator (the heads train alone).
    """

    def __init__(self, vggt: VGGT, cfg: Config):
        super().__init__()
        self.vggt = vggt
        self.settings = cfg.encoder_pretrain
        self.train_aggregator = cfg.encoder_pretrain.train_aggregator
        vggt.requires_grad_(True)
        if not self.train_aggregator:
            vggt.aggregator.freeze()

    def train(self, mode: bool = True) -> VGGTObjective:
        super().train(mode)
        if not self.train_aggregator:
            self.vggt.aggregator.eval()
        return self

    def forward(self, batch: dict) -> dict[str, Tensor]:
        p = self.settings
        images, view_mask = batch["images"], batch["view_mask"].to(torch.bool)
        geometry = batch["geometry"]
        extrinsics = torch.cat([geometry["R"], geometry["t"][..., None]], dim=-1)
        scene = normalize_scene(extrinsics, geometry["K"], batch["depths"], view_mask)
        out = self.vggt(images, view_mask=view_mask)
        frames = view_mask & batch["geom_mask"].to(torch.bool)[:, None] & scene.sample_valid[:, None]
        gt_enc = gt_pose_encoding(scene, geometry["K"], tuple(images.shape[-2:]))
        losses = camera_loss(out.pose_enc_list, gt_enc, frames, loss_type=p.camera_loss, gamma=p.camera_gamma,
                             weight_trans=p.weight_trans, weight_rot=p.weight_rot, weight_focal=p.weight_focal)
        total = p.camera_weight * losses["loss_camera"]
        dense = {"alpha": p.conf_alpha, "gradient": p.gradient_loss, "valid_range": p.valid_range}
        valid = scene.valid & frames[:, :, None, None]
        losses.update(depth_loss(out.depth, out.depth_conf, scene.depths, valid, **dense))
        total = total + p.depth_weight * (losses["loss_conf_depth"] + losses["loss_reg_depth"]
                                          + losses["loss_grad_depth"])
        if out.world_points is not None:
            losses.update(point_loss(out.world_points, out.world_points_conf, scene.world_points, valid, **dense))
            total = total + p.point_weight * (losses["loss_conf_point"] + losses["loss_reg_point"]
                                              + losses["loss_grad_point"])
        return {"loss": total, **losses}

    # ------------------------------------------------------------------ what the loop needs

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The parameters that train, under their official names (``aggregator.*``, ``camera_head.*``)."""
        return {n: p.detach().to("cpu").contiguous() for n, p in self.vggt.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy a checkpoint's trainable weights in, strictly."""
        from vqkit.errors import CheckpointError

        params = {n: p for n, p in self.vggt.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise CheckpointError(f"checkpoint trainable.safetensors does not match the VGGT being trained "
                                  f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name].to(device=p.device, dtype=p.dtype))

    def param_groups(self, train_cfg) -> list[dict]:
        """AdamW groups: the aggregator at ``train.lr``, the heads at ``train.proj_lr``; biases, norms
        and the camera / register tokens without weight decay."""
        groups = []
        for name, lr, prefix in (("aggregator", train_cfg.lr, "aggregator."), ("heads", train_cfg.proj_lr, "")):
            params = [(n, p) for n, p in self.vggt.named_parameters() if p.requires_grad
                      and (n.startswith(prefix) if prefix else not n.startswith("aggregator."))]
            decays = [p.ndim >= 2 and "token" not in n and "norm" not in n for n, p in params]
            decay = [p for (_, p), d in zip(params, decays) if d]
            no_decay = [p for (_, p), d in zip(params, decays) if not d]
            for label, ps, wd in ((name, decay, train_cfg.weight_decay), (f"{name}_no_decay", no_decay, 0.0)):
                if ps:
                    groups.append({"name": label, "params": ps, "lr": lr, "weight_decay": wd})
        return groups

    def parameter_table(self) -> str:
        """Parameters per part (total, trainable)."""
        lines = [f"{'part':<12} {'total':>12} {'trainable':>12}"]
        for name in ("aggregator", "camera_head", "depth_head", "point_head"):
            module = getattr(self.vggt, name, None)
            if module is None:
                continue
            total = sum(p.numel() for p in module.parameters())
            trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
            lines.append(f"{name:<12} {total:>12,} {trainable:>12,}")
        return "\n".join(lines)


class EncoderPretrainRecipe(TrainingLoop):
    """``vqkit pretrain-encoder``'s run (module docstring)."""

    name = "pretrain-encoder"

    def build(self):
        from vqkit.data.posed_views import build_view_set_dataset

        cfg = self.cfg
        model = VGGTObjective(build_vggt(cfg), cfg)
        optimizer = build_optimizer(model, cfg.train)
        self.dataset = build_view_set_dataset(cfg.data, cfg.data.train, train=True, seed=cfg.train.seed,
                                              depth_bins=cfg.model.geometry.depth_bins,
                                              max_depth=cfg.model.geometry.max_depth)
        self.loader_cfg = copy.deepcopy(cfg)
        self.loader_cfg.data.feature_cache = None  # the aggregator trains: images, never cached features
        log.info("pretrain-encoder data: %s", self.dataset.view_set_report.summary())
        return model, optimizer

    def make_loader(self, epoch: int):
        from vqkit.data.dataset import build_dataloader
        from vqkit.data.posed_views import collate_view_sets

        return build_dataloader(self.loader_cfg, "train", None, batch_size=self.cfg.train.batch_size_per_gpu,
                                shuffle=True, rank=self.accelerator.process_index,
                                world_size=self.accelerator.num_processes, epoch=epoch, drop_last=True,
                                dataset=self.dataset, collate_fn=collate_view_sets)

    def run_step(self, micro_batches: list[dict]) -> StepOutcome:
        parts: dict[str, float] = {}
        micro = 0

        def loss_of(out: dict) -> Tensor:  # records the loss's terms of each micro-batch for the log
            nonlocal micro
            for key, value in out.items():
                if key != "loss":
                    parts[key] = parts.get(key, 0.0) + float(value.detach())
            micro += 1
            return out["loss"]

        result = train_step(self.model, self.optimizer, micro_batches, accelerator=self.accelerator,
                            max_grad_norm=self.cfg.train.max_grad_norm, count=_samples, loss_of=loss_of)
        # this rank's loss terms, averaged over its micro-batches (the total loss is over all ranks)
        return StepOutcome(loss=result.loss, weight=result.global_tokens, skipped=result.skipped,
                           parts={k: v / max(1, micro) for k, v in parts.items()})

    def log_fields(self, window: LogWindow, elapsed: float) -> tuple[dict, str]:
        parts = window.mean_parts()
        text = "".join(f" | {label} {parts[key]:.4f}" for label, key in
                       (("camera", "loss_camera"), ("depth", "loss_reg_depth")) if key in parts)
        return parts, text

    def periodic_eval(self) -> dict[str, float] | None:
        cfg = self.cfg
        if not cfg.data.val:
            return None
        from vqkit.data.posed_views import build_view_set_dataset
        from vqkit.eval.geometry import evaluate_geometry

        if getattr(self, "val_dataset", None) is None:
            self.val_dataset = build_view_set_dataset(cfg.data, cfg.data.val, train=False, seed=cfg.train.seed,
                                                      depth_bins=cfg.model.geometry.depth_bins,
                                                      limit=cfg.train.eval_samples)
        self.model.eval()
        metrics = evaluate_geometry(self.core.vggt, self.val_dataset, batch_size=cfg.train.batch_size_per_gpu)
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

    def save_final(self) -> Path:
        """RUN/encoder/model.safetensors (official layout + description), config.yaml, trainer_state.json."""
        folder = self.run_dir / ENCODER_DIR
        state = self.accelerator.get_state_dict(self.model)  # gathers ZeRO-3 partitions (collective)
        if self.is_main:
            vggt = copy.deepcopy(self.core.vggt).to("cpu")
            vggt.load_state_dict({k.removeprefix("vggt."): v for k, v in state.items()}, strict=True)
            cfg = self.cfg
            save_vggt_file(vggt, folder / WEIGHTS_FILE, cfg.model.encoder, head_sizes=head_sizes(cfg),
                           image_size=cfg.data.image_size, resize_mode=cfg.data.resize_mode,
                           extra={"step": self.step})
            save_config(cfg, folder / "config.yaml")
            self.write_final_state(folder)
            self.logger.print(f"encoder weights saved to {folder / WEIGHTS_FILE} (use them with "
                              f"--set model.encoder.weights={folder / WEIGHTS_FILE})")
        return folder


def _samples(batch: dict) -> int:
    """The unit a pretraining micro-batch's loss averages over: its samples."""
    return int(batch["view_mask"].shape[0])


def pretrain_encoder(cfg: Config, *, resume: str | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``cfg`` (module docstring); returns where the run went (``final_dir`` = RUN/encoder).

    resume: None (new run), "auto" (newest complete checkpoint of ``train.output_dir``, or a new run
    when there is none) or a checkpoint folder.
    """
    return EncoderPretrainRecipe(cfg, resume=resume, progress=progress).run()


__all__ = ["ENCODER_DIR", "WEIGHTS_FILE", "EncoderPretrainRecipe", "VGGTObjective", "build_vggt", "head_sizes",
           "pretrain_encoder"]
