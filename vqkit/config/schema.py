"""The typed defaults of an experiment: one dataclass per section, one docstring per field.

Every field has a docstring (the string literal under it) and ``__post_init__`` checks say how to fix
a bad value. Reading YAML and ``--set`` overrides into these classes is :mod:`vqkit.config.io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vqkit.errors import ConfigError


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass
class EncoderConfig:
    """The frozen VGGT aggregator. Argument names follow the official ``Aggregator`` class."""

    img_size: int = 518
    """Image size the positional embedding of the DINOv2 patch embed was trained for."""
    patch_size: int = 14
    """Pixels per patch side; image height and width must be multiples of it."""
    embed_dim: int = 1024
    """Token width C; each returned layer is [B, S, P, 2C] (frame and global outputs concatenated)."""
    depth: int = 24
    """Number of (frame block, global block) pairs."""
    num_heads: int = 16
    """Attention heads of the frame/global blocks."""
    mlp_ratio: float = 4.0
    """MLP hidden size as a multiple of embed_dim."""
    num_register_tokens: int = 4
    """Register tokens per frame (after the camera token)."""
    patch_embed: Literal["dinov2_vitl14_reg", "dinov2", "conv"] = "dinov2_vitl14_reg"
    """Patch embedding: the full DINOv2 ViT-L/14 with registers, a tiny DINOv2 ('dinov2', sized by
    dinov2_depth / dinov2_num_heads), or a single convolution ('conv', fastest, for tests)."""
    dinov2_depth: int = 24
    """Blocks of a 'dinov2' patch embed (ignored for the others; ViT-L uses 24)."""
    dinov2_num_heads: int = 16
    """Heads of a 'dinov2' patch embed (ignored for the others; ViT-L uses 16)."""
    qk_norm: bool = True
    """LayerNorm on queries and keys per head."""
    rope_freq: float = 100.0
    """Base frequency of the 2D rotary embedding; <= 0 disables RoPE."""
    init_values: float = 0.01
    """LayerScale init of the aggregator blocks."""
    weights: str | None = None
    """Official checkpoint: a model.pt / model.safetensors file, a folder holding one, or a hub id
    (e.g. facebook/VGGT-1B, needs network). None = random init (tests, the demo)."""
    layers: list[int] = field(default_factory=lambda: [-1])
    """Which aggregator layers feed the projector (concatenated on the channel axis). -1 = last;
    VG-LLM used -2."""
    frozen: bool = True
    """Keep the aggregator frozen (the design trains only projector, geometry encoder and LoRA)."""
    seed: int = 0
    """Seed of the random init when no weights are given, so a cached-feature run and an image run
    see the same encoder."""
    compile: bool = False
    """Compile each transformer block of the aggregator with ``torch.compile`` (the frame, global and
    DINOv2 blocks; the outputs equal eager's up to float rounding). Pays a compilation of a minute or
    two at the first batch of each shape, so it helps long runs and the feature cache, not short tests;
    on the CPU it needs a C compiler."""

    def __post_init__(self):
        _check(self.patch_size > 0, "model.encoder.patch_size must be positive")
        _check(self.embed_dim % self.num_heads == 0,
               f"model.encoder.embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        _check(self.depth >= 1, "model.encoder.depth must be >= 1")
        _check(len(self.layers) >= 1, "model.encoder.layers needs at least one layer index, e.g. [-1]")
        for layer in self.layers:
            _check(-self.depth <= layer < self.depth,
                   f"model.encoder.layers: {layer} is outside a {self.depth}-layer aggregator")


@dataclass
class ProjectorConfig:
    """The connector from aggregator tokens to LLM tokens: a Perceiver resampler (a fixed number of
    latents per sample) or a VG-LLM-style patch merger (every view's patch tokens, neighbours merged)."""

    type: Literal["perceiver", "patch_merger"] = "perceiver"
    """'perceiver': num_latents learned queries summarise all views (vqkit.models.projector);
    'patch_merger': each view's merge_size x merge_size patch neighbours become one LLM token
    (vqkit.models.patch_merger), so the LLM's attention picks regions per question; the token count
    grows with views and image size (views x ceil(rows/merge_size) x ceil(cols/merge_size))."""
    num_latents: int = 128
    """Perceiver: learned latent queries = vision tokens per sample handed to the LLM."""
    num_layers: int = 6
    """Perceiver layers (cross-attention + MLP each)."""
    num_heads: int = 8
    """Attention heads in the Perceiver."""
    merge_size: int = 2
    """Patch merger: side of the square of neighbouring patches merged into one token (VG-LLM: 2)."""
    dim: int | None = None
    """Perceiver: internal width (None = the LLM hidden size). Patch merger: the MLP's hidden width
    (None = the merged width, merge_size**2 x the aggregator's channels, as Qwen2.5-VL's merger)."""
    max_views: int = 32
    """Size of the learned view embedding table (views beyond this are an error)."""
    ff_mult: int = 4
    """MLP width as a multiple of dim."""
    pos_embed: bool = True
    """Add a learned 2D position (row + column embedding of each patch token, one embedding per
    camera/register token) to the aggregator tokens, so latents can attend to image regions."""
    max_grid: int = 64
    """Rows/columns of the position tables: patch-grid side lengths up to this (518 px / 14 = 37)."""

    def __post_init__(self):
        _check(self.num_latents >= 1, "model.projector.num_latents must be >= 1")
        _check(self.max_grid >= 1, "model.projector.max_grid must be >= 1")
        _check(self.num_layers >= 1, "model.projector.num_layers must be >= 1")
        _check(self.merge_size >= 1, "model.projector.merge_size must be >= 1")


@dataclass
class GeometryConfig:
    """Geometry tokens: one per view from (R, t relative to view 0, normalised K, depth_hist)."""

    enabled: bool = True
    """Add geometry tokens for records that carry geom_token; False ignores geometry entirely."""
    depth_bins: int = 16
    """Bins of depth_hist over [0, max_depth] metres."""
    max_depth: float = 10.0
    """Upper edge of the depth histogram in metres."""
    hidden: int = 256
    """Hidden width of the geometry MLP."""
    source: Literal["records", "heads", "auto"] = "records"
    """Where a view's camera geometry comes from. 'records': the record's geom_token (or the cameras
    file of `vqkit ask`); a record without it gets no geometry tokens. 'heads': always predicted by
    VGGT's camera and depth heads from the views themselves (the record's poses are not used).
    'auto': the record's when it has them, else predicted (records without poses, geometry dropout in
    training, photos without a cameras file). Prediction runs inside the model on the aggregator's
    tokens and needs camera_head.* and depth_head.* in model.encoder.weights (vqkit pretrain-encoder
    writes such a file; the official VGGT-1B checkpoint has them); with data.feature_cache the heads'
    aggregator layers must be among model.encoder.layers. Scale: docs/design.md section 8."""
    median_depth_m: float = 2.6
    """Predicted geometry: VGGT's depth and translations are known up to one factor per set of views;
    it is chosen so that the median predicted depth of the views is this many metres (the synthetic
    rooms' median is 2.6 m; set the training corpus' own, vqkit.vggt.median_depth_from_histograms),
    unless the batch has metric depth maps (data.load_depth), which then fix it."""

    def __post_init__(self):
        _check(self.depth_bins >= 1, "model.geometry.depth_bins must be >= 1")
        _check(self.median_depth_m > 0, "model.geometry.median_depth_m must be > 0 (metres)")


@dataclass
class LLMConfig:
    """The language model: transformers AutoModelForCausalLM + AutoTokenizer."""

    name_or_path: str = "Qwen/Qwen3-4B-Instruct-2507"
    """Hub id or local folder of the LLM (and of its tokenizer unless `tokenizer` is set)."""
    tokenizer: str | None = None
    """Tokenizer hub id or folder; None = name_or_path."""
    from_config: bool = False
    """Build the LLM from its config with random weights instead of loading them (tests, demo). The
    config is config_overrides when it names model_type, else name_or_path's (a known hub id such as
    Qwen/Qwen3-4B-Instruct-2507 works offline): the real architecture without its weights."""
    config_overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields to override (e.g. a tiny Qwen3: hidden_size, num_hidden_layers, ...). With
    from_config and model_type set, no hub access is needed; vocab_size defaults to the tokenizer's."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype: auto = bfloat16 on GPU, float32 on CPU."""
    attn_implementation: str = "sdpa"
    """transformers attention backend (sdpa, flash_attention_2, eager)."""
    gradient_checkpointing: bool | Literal["auto"] = False
    """Recompute LLM activations in backward to save memory (costs one more forward of the LLM's
    layers). auto: the memory plan decides (`vqkit plan` says which): off when the configured batch fits
    on the GPU without it, else on; `vqkit train` and `vqkit bench` resolve it before building the model."""
    liger_kernels: bool = False
    """Liger's Triton kernels for the LLM (RMSNorm, SwiGLU, RoPE, and the fused linear cross-entropy at
    the answer positions, which never materialises the logits). Needs CUDA and the liger-kernel package
    (`pip install 'vqkit[gpu]'`); set on a CPU run or without the package it is an error, not a fallback."""

    @property
    def architecture_from_overrides(self) -> bool:
        """True when config_overrides alone define the architecture (from_config with model_type):
        name_or_path is then only where the tokenizer may come from."""
        return self.from_config and "model_type" in self.config_overrides


@dataclass
class LoRAConfig:
    """peft LoRA adapters on the LLM."""

    enabled: bool = True
    """Train LoRA adapters; False with full_finetune=False freezes the LLM completely."""
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Linear layers that receive adapters."""
    full_finetune: bool = False
    """Train every LLM weight instead of adapters (only sensible for tiny LLMs such as the demo's)."""

    def __post_init__(self):
        _check(self.r >= 1, "model.lora.r must be >= 1")
        _check(not (self.enabled and self.full_finetune),
               "model.lora: choose either enabled (adapters) or full_finetune, not both")


@dataclass
class ModelConfig:
    """The whole VQModel: encoder -> projector -> [geometry tokens] -> LLM (+ LoRA)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class SourceConfig:
    """One corpus of records: a JSON/JSONL file or glob, and its share of the mix."""

    path: str = ""
    """JSON array or JSONL file, or a glob of them."""
    weight: float = 1.0
    """Relative sampling weight when several sources are mixed."""
    name: str | None = None
    """Label for logs and metrics; default = the file stem."""

    def __post_init__(self):
        _check(bool(self.path), "data source needs a path (a .json/.jsonl file or a glob)")
        _check(self.weight > 0, f"data source {self.path}: weight must be > 0, got {self.weight}")


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
    view_sampling: Literal["uniform", "first", "random"] = "uniform"
    """How to pick num_views of more: evenly spaced, the first ones, or random (training only)."""
    view_dropout: float = 0.0
    """Training only: drop each view with this probability (always keeps at least one)."""
    geometry_dropout: float = 0.0
    """Training only: leave out a record's camera geometry (its geometry tokens) with this probability,
    so the model also answers photos without poses (``vqkit ask --no-geometry``, phone photos)."""
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
    exclude_qtypes: list[str] = field(default_factory=list)
    """Leave out the records of these qtypes from every source (the demo's blind baseline leaves out
    the training rooms' ``describe`` question, which only the views can answer)."""

    def __post_init__(self):
        _check(self.image_size % 14 == 0,
               f"data.image_size must be a multiple of 14 (VGGT patch size), got {self.image_size}; "
               f"try {max(14, round(self.image_size / 14) * 14)}")
        _check(self.num_views >= 1, "data.num_views must be >= 1")
        _check(0.0 <= self.view_dropout < 1.0, "data.view_dropout must be in [0, 1)")
        _check(0.0 <= self.geometry_dropout <= 1.0, "data.geometry_dropout must be in [0, 1]")
        _check(self.max_length >= 16, "data.max_length must be >= 16")
        _check(self.turns >= 1, "data.turns must be >= 1")
        if self.prompt_template != "chat":
            _check("{question}" in self.prompt_template and "<image>" in self.prompt_template
                   and "{answer}" in self.prompt_template,
                   "data.prompt_template must be 'chat' or contain {question}, <image> and {answer}")
            _check(self.prompt_template.rstrip().endswith("{answer}"),
                   "data.prompt_template must end with {answer} (the label span)")


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """The training loop (vqkit.train.run)."""

    output_dir: str = "runs/default"
    """Run directory (config.yaml, metrics.jsonl, tb/, checkpoints/, final/, eval/)."""
    max_steps: int = 1000
    """Optimizer steps to train for."""
    batch_size_per_gpu: int = 4
    """Micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; global batch = batch_size_per_gpu * grad_accum * world size."""
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
        _check(self.max_steps >= 1, "train.max_steps must be >= 1")
        _check(self.batch_size_per_gpu >= 1, "train.batch_size_per_gpu must be >= 1")
        _check(self.grad_accum >= 1, "train.grad_accum must be >= 1")
        _check(self.lr > 0 and self.proj_lr > 0, "train.lr and train.proj_lr must be > 0")
        _check(self.log_every_steps >= 1, "train.log_every_steps must be >= 1")
        _check(self.save_every_steps >= 0, "train.save_every_steps must be >= 0")
        _check(self.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
        _check(len(self.betas) == 2, "train.betas needs two values, e.g. [0.9, 0.999]")


@dataclass
class EvalConfig:
    """Generation and scoring (vqkit eval, periodic eval)."""

    batch_size: int = 8
    """Samples per generation batch."""
    max_new_tokens: int = 16
    """Generation budget for Stage 1 answers."""
    roomplan_max_new_tokens: int = 512
    """Generation budget for Stage 2 layouts (a room with 8 objects is ~400 Qwen3 tokens)."""
    do_sample: bool = False
    """Greedy decoding by default (the official scorers assume it)."""
    temperature: float = 1.0
    """Sampling temperature (only with do_sample)."""
    top_p: float = 1.0
    """Nucleus sampling (only with do_sample)."""
    num_beams: int = 1
    """Beam search width."""


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
        _check(len(self.dpt_out_channels) == 4, "encoder_pretrain.dpt_out_channels needs 4 values")
        _check(self.dpt_layers is None or len(self.dpt_layers) == 4,
               "encoder_pretrain.dpt_layers needs 4 layer indices (or null for the default)")
        _check(self.dpt_features >= 2 and self.dpt_features % 2 == 0, "encoder_pretrain.dpt_features must be even")
        _check(self.camera_trunk_depth >= 1, "encoder_pretrain.camera_trunk_depth must be >= 1")
        _check(self.valid_range < 1, "encoder_pretrain.valid_range must be < 1 (a quantile; <= 0 disables it)")
        _check(self.semantic_weight >= 0 and self.colour_weight >= 0,
               "encoder_pretrain.semantic_weight and colour_weight must be >= 0")
        _check(self.geometry_heads or self.semantic_weight > 0 or self.colour_weight > 0,
               "encoder_pretrain: nothing to train (geometry_heads is false and semantic_weight and colour_weight are 0)")
        _check(self.semantic_weight == 0 or 2 <= self.semantic_classes <= 255,
               "encoder_pretrain.semantic_classes must be in 2..255 with semantic_weight > 0")
        _check(self.semantic_cells >= 1, "encoder_pretrain.semantic_cells must be >= 1")


@dataclass
class Config:
    """A whole experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    encoder_pretrain: EncoderPretrainConfig = field(default_factory=EncoderPretrainConfig)
    """`vqkit pretrain-encoder` only; ignored by `vqkit train`."""

    def __post_init__(self):
        _check(self.data.turns == 1 or self.model.llm.attn_implementation in ("sdpa", "eager"),
               f"data.turns > 1 keeps the turns apart with a 4D attention mask, which "
               f"model.llm.attn_implementation={self.model.llm.attn_implementation!r} does not take; use sdpa or eager")
