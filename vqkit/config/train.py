"""The training sections: the optimiser and the run (`train`), and the encoder's pretraining (`encoder_pretrain`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vqkit.config.checks import check
from vqkit.errors import ConfigError


@dataclass
class TrainConfig:
    """The training loop (vqkit.train.run)."""

    output_dir: str = "runs/default"
    """Run directory (config.yaml, metrics.jsonl, tb/, checkpoints/, final/, eval/)."""
    max_steps: int = 1000
    """Optimizer steps to train for."""
    batch_size_per_gpu: int = 4
    """Micro-batch per process."""
    global_batch_size: int | None = None
    """Samples per optimizer step over all processes, the same on any number of GPUs: the accumulation is
    then derived, global_batch_size / (batch_size_per_gpu x processes), and must come out whole
    (:meth:`accumulation`). None: the global batch is batch_size_per_gpu x grad_accum x processes, so it
    grows with the GPU count."""
    grad_accum: int | None = None
    """Micro-batches per optimizer step when global_batch_size is not set (None = 1). Not both: with
    global_batch_size it is derived. Read it through :meth:`accumulation`."""
    tokens_per_batch: int | None = None
    """Micro-batches measured in tokens instead of samples (batch_size_per_gpu is then unused): each holds
    as many samples as fit this many tokens per process (packed with data.packing: their sum; else the
    count times the longest), so a step's work no longer depends on which samples it drew. At least
    data.max_length, so that every sample fits."""
    lr: float = 2e-4
    """Learning rate of the LLM parameters (LoRA adapters or full LLM)."""
    proj_lr: float = 1e-4
    """Learning rate of the projector and geometry encoder."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warmup before the cosine decay."""
    min_lr_ratio: float = 0.0
    """Cosine decays to lr * min_lr_ratio."""
    max_grad_norm: float = 1.0
    """Gradient clipping; <= 0 disables it."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """auto = bf16 on GPU, none on CPU."""
    deepspeed: str | None = None
    """DeepSpeed JSON (configs/deepspeed/zero2.json / zero3.json); "auto" values are filled from this config."""
    seed: int = 42
    """Seed for init, data order, dropout."""
    log_every_steps: int = 10
    """Console/metrics.jsonl/TensorBoard logging interval."""
    save_every_steps: int = 500
    """Checkpoint interval (0 = only at the end)."""
    keep_checkpoints: int = 3
    """Keep the newest K checkpoints."""
    eval_every_steps: int = 0
    """Periodic held-out evaluation (loss and EM); 0 disables it."""
    eval_samples: int = 64
    """Size of the held-out slice for periodic evaluation."""
    max_nonfinite_steps: int = 5
    """Abort after this many non-finite losses in a row (each one skips its step)."""
    overwrite: bool = False
    """Allow writing into an existing run directory that holds another run."""

    def __post_init__(self):
        check(self.max_steps >= 1, "train.max_steps must be >= 1")
        check(self.batch_size_per_gpu >= 1, "train.batch_size_per_gpu must be >= 1")
        check(self.grad_accum is None or self.grad_accum >= 1, "train.grad_accum must be >= 1")
        check(self.tokens_per_batch is None or self.tokens_per_batch >= 16,
              f"train.tokens_per_batch must be >= 16 (or null for batches of batch_size_per_gpu samples), "
              f"got {self.tokens_per_batch}")
        if self.global_batch_size is not None:
            check(self.grad_accum is None,
                  f"train.global_batch_size ({self.global_batch_size}) and train.grad_accum ({self.grad_accum}) are "
                  f"both set: grad_accum is derived from the global batch; drop one (--set train.grad_accum=null, "
                  f"or --set train.global_batch_size=null)")
            check(self.tokens_per_batch is None,
                  f"train.global_batch_size ({self.global_batch_size}) counts samples, but with "
                  f"train.tokens_per_batch ({self.tokens_per_batch}) a micro-batch's samples vary: set "
                  f"train.grad_accum instead")
            check(self.global_batch_size >= 1 and self.global_batch_size % self.batch_size_per_gpu == 0,
                  f"train.global_batch_size ({self.global_batch_size}) must be a positive multiple of "
                  f"train.batch_size_per_gpu ({self.batch_size_per_gpu})")
        check(self.lr > 0 and self.proj_lr > 0, "train.lr and train.proj_lr must be > 0")
        check(self.log_every_steps >= 1, "train.log_every_steps must be >= 1")
        check(self.save_every_steps >= 0, "train.save_every_steps must be >= 0")
        check(self.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
        check(len(self.betas) == 2, "train.betas needs two values, e.g. [0.9, 0.999]")

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on ``world_size`` processes: global_batch_size / (batch_size_per_gpu
        x world_size) when the global batch is set (a one-line error when that is not whole), else grad_accum."""
        if self.global_batch_size is None:
            return self.grad_accum or 1
        per_micro_batch = self.batch_size_per_gpu * world_size
        if self.global_batch_size % per_micro_batch:
            fits = [b for b in range(1, self.batch_size_per_gpu + 1)
                    if self.global_batch_size % (b * world_size) == 0]
            hint = (f"--set train.batch_size_per_gpu={fits[-1]}" if fits
                    else f"a GPU count that divides {self.global_batch_size}")
            raise ConfigError(f"train.global_batch_size {self.global_batch_size} is not a multiple of "
                              f"batch_size_per_gpu {self.batch_size_per_gpu} x {world_size} process(es) = "
                              f"{per_micro_batch}; use {hint}")
        return self.global_batch_size // per_micro_batch

    def global_batch(self, world_size: int) -> int:
        """Samples per optimizer step on ``world_size`` processes."""
        return self.batch_size_per_gpu * self.accumulation(world_size) * world_size


@dataclass
class EncoderPretrainConfig:
    """`vqkit pretrain-encoder`: trains VGGT (the model.encoder aggregator with camera and depth heads,
    the point head optional) on records with poses (geom_token) and depth maps (depths), with VGGT's
    losses (vqkit.vggt.losses). The run itself follows train.* (output_dir, max_steps, batch,
    warmup and cosine schedule, checkpoints, resume, DeepSpeed; train.lr = the aggregator's learning
    rate, train.proj_lr = the heads') and data.* (train / val sources, num_views, image_size,
    resize_mode, view_sampling). It writes RUN/encoder/model.safetensors in the official layout
    (aggregator.*, camera_head.*, depth_head.*[, point_head.*]), which model.encoder.weights loads."""

    train_aggregator: bool = True
    """Train the aggregator with the heads; False trains the heads alone on a frozen aggregator
    (VGGT's head-only fine-tuning)."""
    point_head: bool = False
    """Also train the point-map head (the official checkpoint has one; geometry does not need it)."""
    dpt_layers: list[int] | None = None
    """The four aggregator layers the dense heads read; None = the official (4, 11, 17, 23) at depth 24,
    else the last layer of each quarter (vqkit.vggt.default_dpt_layers)."""
    dpt_features: int = 256
    """Channels of the dense heads' fusion blocks (official 256; a demo-size encoder uses far fewer)."""
    dpt_out_channels: list[int] = field(default_factory=lambda: [256, 512, 1024, 1024])
    """Channels of the dense heads' four projected token maps (official [256, 512, 1024, 1024])."""
    camera_trunk_depth: int = 4
    """Transformer blocks of the camera head's trunk (official 4)."""
    camera_num_heads: int = 16
    """Attention heads of the camera trunk (official 16; must divide 2 x model.encoder.embed_dim)."""
    geometry_heads: bool = True
    """Train the camera and depth heads with VGGT's losses (records need poses and depth maps). False:
    the semantic / colour objective alone (records need semantic maps for it); the weights file then
    holds the aggregator only."""
    semantic_weight: float = 0.0
    """Weight of the per-patch semantic objective (0 = off; vqkit.vggt.semantic_head): each patch
    sub-cell's class distribution in the records' semantic maps, as DINOv2's pretraining teaches the real
    VGGT's encoder what is where. Its head is dropped from the weights file."""
    semantic_classes: int = 0
    """Classes of the semantic maps (pixel values 0 .. n-1; 255 = unlabelled). The synthetic rooms: 15
    (stats.json's semantic_classes)."""
    semantic_cells: int = 2
    """Sub-cells per patch side for the semantic and colour targets (must divide the patch size)."""
    semantic_layer: int = -1
    """The aggregator layer the semantic / colour head reads."""
    colour_weight: float = 0.0
    """Weight of the per-sub-cell mean colour regression (MSE on [0, 1] RGB; no labels needed), which
    keeps the appearance in the tokens that the questions read."""
    camera_weight: float = 5.0
    """Weight of the camera loss (VGGT: 5)."""
    camera_loss: Literal["l1", "huber"] = "l1"
    """Distance on the pose encoding: 'l1' (VGGT's code) or 'huber' (the paper's; delta 1)."""
    camera_gamma: float = 0.6
    """Weight of the camera head's earlier iterations: iteration i of n counts gamma ** (n - 1 - i)."""
    weight_trans: float = 1.0
    """Weight of the translation part of the camera loss."""
    weight_rot: float = 1.0
    """Weight of the quaternion part of the camera loss."""
    weight_focal: float = 0.5
    """Weight of the field-of-view part of the camera loss."""
    depth_weight: float = 1.0
    """Weight of the depth loss (confidence-weighted + plain + gradient terms)."""
    point_weight: float = 1.0
    """Weight of the point loss (with point_head)."""
    conf_alpha: float = 0.2
    """alpha of the confidence term: gamma * |err| * conf - alpha * log(conf) (VGGT: 0.2)."""
    gradient_loss: bool = True
    """Add the multi-scale gradient term to the depth (and point) loss."""
    valid_range: float = 0.98
    """Drop the pixel terms above this quantile as outliers (VGGT: 0.98); <= 0 keeps all."""

    def __post_init__(self):
        check(len(self.dpt_out_channels) == 4, "encoder_pretrain.dpt_out_channels needs 4 values")
        check(self.dpt_layers is None or len(self.dpt_layers) == 4,
              "encoder_pretrain.dpt_layers needs 4 layer indices (or null for the default)")
        check(self.dpt_features >= 2 and self.dpt_features % 2 == 0, "encoder_pretrain.dpt_features must be even")
        check(self.camera_trunk_depth >= 1, "encoder_pretrain.camera_trunk_depth must be >= 1")
        check(self.valid_range < 1, "encoder_pretrain.valid_range must be < 1 (a quantile; <= 0 disables it)")
        check(self.semantic_weight >= 0 and self.colour_weight >= 0,
              "encoder_pretrain.semantic_weight and colour_weight must be >= 0")
        check(self.geometry_heads or self.semantic_weight > 0 or self.colour_weight > 0,
             "encoder_pretrain: nothing to train (geometry_heads is false and semantic_weight and "
             "colour_weight are 0)")
        check(self.semantic_weight == 0 or 2 <= self.semantic_classes <= 255,
              "encoder_pretrain.semantic_classes must be in 2..255 with semantic_weight > 0")
        check(self.semantic_cells >= 1, "encoder_pretrain.semantic_cells must be >= 1")
