"""``vqkit pretrain-encoder``: train VGGT (the ``model.encoder`` aggregator with camera and depth heads,
the point head optional) on posed views with depth, with VGGT's losses, and write its weights in the
official layout.

    result = pretrain_encoder(load_config("configs/camera_depth_heads.yaml"))
    # RUN/encoder/model.safetensors: aggregator.*, camera_head.*, depth_head.* (+ a description)
    # then: vqkit train --config configs/first_demo.yaml --set model.encoder.weights=RUN/encoder/model.safetensors

The run is a :class:`vqkit.train.loop.TrainingLoop` like ``vqkit train``'s (run folder, progress,
``metrics.jsonl`` / TensorBoard, atomic checkpoints, exact ``--resume auto``, SIGTERM, accelerate /
DeepSpeed): only the model, the data and the step differ.

- **Data** (:mod:`vqkit.data.posed_views`): the distinct view sets of ``data.train`` with poses and
  depth maps (the synthetic rooms have both), ``data.num_views`` views at ``data.image_size``.
- **Model** (:class:`VGGTObjective`): VGGT built from ``model.encoder`` (random from
  ``model.encoder.seed``, or ``model.encoder.weights``) and the head sizes of ``encoder_pretrain``;
  its forward normalises each sample's scene as VGGT does and returns the losses
  (:mod:`vqkit.vggt.losses`): ``camera_weight * camera + depth_weight * depth [+ point]``,
  plus, with ``semantic_weight`` / ``colour_weight``, the per-patch semantic and colour objective of
  :mod:`vqkit.vggt.semantic_head` (``geometry_heads: false`` trains that alone, on records with
  semantic maps, e.g. the synthetic rooms').
- **Step**: :func:`vqkit.train.step.train_step` with samples as the unit (every sample weighs the same,
  across micro-batches and ranks); AdamW with the aggregator at ``train.lr`` and the heads at
  ``train.proj_lr``, warmup and cosine as ``vqkit train``.
- **Held-out**: every ``train.eval_every_steps``, :func:`vqkit.eval.geometry_errors.evaluate_geometry` on the
  first ``train.eval_samples`` view sets of ``data.val`` (rotation and translation-direction errors of
  the relative poses, depth AbsRel); with the semantic head, its sub-cell accuracy and mean class recall
  (:func:`evaluate_semantic_head`).
- **Output**: ``RUN/encoder/model.safetensors`` (:func:`vqkit.vggt.weights_file.save_vggt_file`),
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
from vqkit.errors import ConfigError
from vqkit.train.encoder_weights import ENCODER_DIR, WEIGHTS_FILE
from vqkit.train.loop import LogWindow, StepOutcome, TrainingLoop, TrainResult
from vqkit.train.optim import build_optimizer
from vqkit.train.step import train_step
from vqkit.utils.runtime import move_to_device
from vqkit.vggt import VGGT
from vqkit.vggt.losses import (
    camera_loss,
    depth_loss,
    gt_pose_encoding,
    normalize_scene,
    point_loss,
)
from vqkit.vggt.semantic_head import PatchSemanticHead, patch_targets, semantic_losses, semantic_scores
from vqkit.vggt.weights import load_aggregator_weights
from vqkit.vggt.weights_file import describe_vggt_file, save_vggt_file

log = logging.getLogger(__name__)



def head_sizes(cfg: Config) -> dict:
    """The :class:`VGGT` head arguments ``encoder_pretrain`` asks for (camera and depth heads with
    ``geometry_heads``)."""
    p = cfg.encoder_pretrain
    return {"enable_camera": p.geometry_heads, "enable_depth": p.geometry_heads,
            "enable_point": p.point_head and p.geometry_heads,
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
    heads = {"camera_head": sizes["enable_camera"], "depth_head": sizes["enable_depth"],
             "point_head": sizes["enable_point"]}
    if enc.weights:
        info = describe_vggt_file(enc.weights)
        wanted = [h for h, on in heads.items() if on]
        if info.has("aggregator", *wanted) and not any(info.has(h) for h, on in heads.items() if not on):
            return VGGT.from_config(enc, **sizes)
        log.info("%s: starting the aggregator from it and the heads from random (it holds %s)",
                 enc.weights, ", ".join(info.parts))
        model = VGGT.from_config(dataclasses.replace(enc, weights=None), **sizes)
        load_aggregator_weights(model.aggregator, enc.weights)
    else:
        model = VGGT.from_config(enc, **sizes)
    if model.camera_head is not None:
        start_fields_of_view(model)
    return model


class VGGTObjective(nn.Module):
    """VGGT and its training losses: ``forward(batch)`` -> ``{"loss": total, "loss_camera": ..., ...}``.

    ``batch``: :func:`vqkit.data.posed_views.collate_view_sets` (images, view_mask, geometry R / t / K
    of the input images, depths in metres, semantic maps). The geometry heads supervise only samples
    with poses and at least one valid depth pixel. ``train_aggregator=False`` freezes the aggregator
    (the heads train alone). With ``semantic_weight`` or ``colour_weight``, ``semantic_head`` is a
    :class:`PatchSemanticHead` on aggregator layer ``semantic_layer``.
    """

    def __init__(self, vggt: VGGT, cfg: Config):
        super().__init__()
        p = cfg.encoder_pretrain
        self.vggt = vggt
        self.settings = p
        self.train_aggregator = p.train_aggregator
        self.semantic_head = None
        if p.semantic_weight > 0 or p.colour_weight > 0:
            patch = vggt.aggregator.patch_size
            if patch % p.semantic_cells:
                raise ConfigError(f"encoder_pretrain.semantic_cells ({p.semantic_cells}) must divide the patch "
                                  f"size ({patch})")
            self.semantic_layer = vggt.aggregator.resolve_layers([p.semantic_layer])[0]
            self.semantic_head = PatchSemanticHead(vggt.aggregator.feature_dim([p.semantic_layer]),
                                                   p.semantic_classes if p.semantic_weight > 0 else 0,
                                                   p.semantic_cells)
        vggt.requires_grad_(True)
        if not self.train_aggregator:
            vggt.aggregator.freeze()

    def train(self, mode: bool = True) -> VGGTObjective:
        super().train(mode)
        if not self.train_aggregator:
            self.vggt.aggregator.eval()
        return self

    def forward(self, batch: dict) -> dict[str, Tensor]:
        images, view_mask = batch["images"], batch["view_mask"].to(torch.bool)
        layers = [self.semantic_layer] if self.semantic_head is not None else None
        out = self.vggt(images, view_mask=view_mask, layers=layers)
        losses: dict[str, Tensor] = {}
        total = images.new_zeros(())
        if self.vggt.camera_head is not None:
            losses = self.geometry_losses(out, batch)
            total = total + losses.pop("loss")
        if self.semantic_head is not None:
            p = self.settings
            logits, colour, targets = self.semantic_predictions(out, batch)
            losses.update(semantic_losses(logits, colour, targets, view_mask))
            total = total + p.colour_weight * losses["loss_colour"]
            if "loss_semantic" in losses:
                total = total + p.semantic_weight * losses["loss_semantic"]
        return {"loss": total, **losses}

    def semantic_predictions(self, out, batch: dict):
        """The semantic head on ``out``'s tokens: (class logits or None, colour, :class:`PatchTargets`)."""
        p = self.settings
        tokens = out.tokens[self.semantic_layer][:, :, out.patch_start_idx:]
        logits, colour = self.semantic_head(tokens)
        targets = patch_targets(batch["images"], batch.get("semantics") if logits is not None else None,
                                patch_size=self.vggt.aggregator.patch_size, cells=p.semantic_cells,
                                num_classes=p.semantic_classes)
        return logits, colour, targets

    def geometry_losses(self, out, batch: dict) -> dict[str, Tensor]:
        """VGGT's camera and depth (and point) losses of ``out`` against the batch's poses and depths."""
        p = self.settings
        images, view_mask = batch["images"], batch["view_mask"].to(torch.bool)
        geometry = batch["geometry"]
        extrinsics = torch.cat([geometry["R"], geometry["t"][..., None]], dim=-1)
        scene = normalize_scene(extrinsics, geometry["K"], batch["depths"], view_mask)
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

    def _trainable(self) -> dict[str, nn.Parameter]:
        """The parameters that train, under their official names (``aggregator.*``, ``camera_head.*``)
        and ``semantic_head.*``."""
        return {n.removeprefix("vggt."): p for n, p in self.named_parameters() if p.requires_grad}

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The parameters that train (:meth:`_trainable`), on the CPU."""
        return {n: p.detach().to("cpu").contiguous() for n, p in self._trainable().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy a checkpoint's trainable weights in, strictly."""
        from vqkit.errors import CheckpointError

        params = self._trainable()
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
        trainable = self._trainable().items()
        for name, lr, prefix in (("aggregator", train_cfg.lr, "aggregator."), ("heads", train_cfg.proj_lr, "")):
            params = [(n, p) for n, p in trainable
                      if (n.startswith(prefix) if prefix else not n.startswith("aggregator."))]
            decays = [p.ndim >= 2 and "token" not in n and "norm" not in n for n, p in params]
            decay = [p for (_, p), d in zip(params, decays, strict=True) if d]
            no_decay = [p for (_, p), d in zip(params, decays, strict=True) if not d]
            for label, ps, wd in ((name, decay, train_cfg.weight_decay), (f"{name}_no_decay", no_decay, 0.0)):
                if ps:
                    groups.append({"name": label, "params": ps, "lr": lr, "weight_decay": wd})
        return groups

    def parameter_table(self) -> str:
        """Parameters per part (total, trainable)."""
        lines = [f"{'part':<12} {'total':>12} {'trainable':>12}"]
        for name in ("aggregator", "camera_head", "depth_head", "point_head", "semantic_head"):
            module = getattr(self.vggt, name, None) if name != "semantic_head" else self.semantic_head
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
                                              max_depth=cfg.model.geometry.max_depth, **view_set_needs(cfg))
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
                       (("camera", "loss_camera"), ("depth", "loss_reg_depth"), ("semantic", "loss_semantic"),
                        ("colour", "loss_colour")) if key in parts)
        return parts, text

    def periodic_eval(self) -> dict[str, float] | None:
        cfg = self.cfg
        if not cfg.data.val:
            return None
        from vqkit.data.posed_views import build_view_set_dataset
        from vqkit.eval.geometry_errors import evaluate_geometry

        if getattr(self, "val_dataset", None) is None:
            self.val_dataset = build_view_set_dataset(cfg.data, cfg.data.val, train=False, seed=cfg.train.seed,
                                                      depth_bins=cfg.model.geometry.depth_bins,
                                                      limit=cfg.train.eval_samples, **view_set_needs(cfg))
        self.model.eval()
        metrics = {}
        if self.core.vggt.camera_head is not None:
            metrics.update(evaluate_geometry(self.core.vggt, self.val_dataset, batch_size=cfg.train.batch_size_per_gpu))
        if self.core.semantic_head is not None and self.core.semantic_head.classes is not None:
            metrics.update(evaluate_semantic_head(self.core, self.val_dataset, batch_size=cfg.train.batch_size_per_gpu))
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

    def save_final(self) -> Path:
        """RUN/encoder/model.safetensors (official layout + description), config.yaml, trainer_state.json."""
        folder = self.run_dir / ENCODER_DIR
        state = self.accelerator.get_state_dict(self.model)  # gathers ZeRO-3 partitions (collective)
        if self.is_main:
            vggt = copy.deepcopy(self.core.vggt).to("cpu")
            # the semantic head is a pretraining device: the file keeps VGGT's own parts
            vggt.load_state_dict({k.removeprefix("vggt."): v for k, v in state.items() if k.startswith("vggt.")},
                                 strict=True)
            cfg = self.cfg
            save_vggt_file(vggt, folder / WEIGHTS_FILE, cfg.model.encoder, head_sizes=head_sizes(cfg),
                           image_size=cfg.data.image_size, resize_mode=cfg.data.resize_mode,
                           extra={"step": self.step})
            save_config(cfg, folder / "config.yaml")
            self.write_final_state(folder)
            self.logger.print(f"encoder weights saved to {folder / WEIGHTS_FILE} (use them with "
                              f"--set model.encoder.weights={folder / WEIGHTS_FILE})")
        return folder


def view_set_needs(cfg: Config) -> dict[str, bool]:
    """What a view set needs for ``encoder_pretrain``'s objectives (:func:`build_view_set_dataset`'s
    ``geometry`` and ``semantics``); the colour objective needs the images only."""
    p = cfg.encoder_pretrain
    return {"geometry": p.geometry_heads, "semantics": p.semantic_weight > 0}


@torch.no_grad()
def evaluate_semantic_head(objective: VGGTObjective, dataset, *, batch_size: int = 8) -> dict[str, float]:
    """The semantic head's held-out scores on a view-set dataset with semantic maps, each patch sub-cell
    taken as its majority class: ``semantic_cell_accuracy`` and ``semantic_mean_recall`` (the mean over
    the classes present of the share of their cells found; small objects count as much as walls), in %."""
    from torch.utils.data import DataLoader

    from vqkit.data.posed_views import collate_view_sets

    device = next(objective.parameters()).device
    was_training = objective.training
    objective.eval()
    sums: dict[str, Tensor] = {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_view_sets):
        batch = move_to_device(batch, device)
        out = objective.vggt(batch["images"], view_mask=batch["view_mask"], layers=[objective.semantic_layer])
        logits, _, targets = objective.semantic_predictions(out, batch)
        for key, value in semantic_scores(logits, targets, batch["view_mask"]).items():
            sums[key] = sums[key] + value.cpu() if key in sums else value.cpu()
    objective.train(was_training)
    present = sums["class_cells"] > 0
    recall = (sums["class_correct"][present] / sums["class_cells"][present]).mean()
    return {"semantic_cell_accuracy": float(100 * sums["correct"] / sums["cells"].clamp(min=1)),
            "semantic_mean_recall": float(100 * recall)}


def _samples(batch: dict) -> int:
    """The unit a pretraining micro-batch's loss averages over: its samples."""
    return int(batch["view_mask"].shape[0])


def pretrain_encoder(cfg: Config, *, resume: str | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``cfg`` (module docstring); returns where the run went (``final_dir`` = RUN/encoder).

    resume: None (new run), "auto" (newest complete checkpoint of ``train.output_dir``, or a new run
    when there is none) or a checkpoint folder.
    """
    return EncoderPretrainRecipe(cfg, resume=resume, progress=progress).run()


__all__ = ["ENCODER_DIR", "WEIGHTS_FILE", "EncoderPretrainRecipe", "VGGTObjective", "build_vggt",
           "evaluate_semantic_head", "head_sizes", "pretrain_encoder", "view_set_needs"]
