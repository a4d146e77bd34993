"""The model section: the frozen encoder, the projector, geometry tokens, the LLM and its adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vqkit.config.checks import check


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
        check(self.patch_size > 0, "model.encoder.patch_size must be positive")
        check(self.embed_dim % self.num_heads == 0,
              f"model.encoder.embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        check(self.depth >= 1, "model.encoder.depth must be >= 1")
        check(len(self.layers) >= 1, "model.encoder.layers needs at least one layer index, e.g. [-1]")
        for layer in self.layers:
            check(-self.depth <= layer < self.depth,
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
    point_embed: bool = False
    """Patch merger: add to each cell an embedding of where its patches are in 3D (the mean back-projected
    point of each patch's pixels, from the records' depth maps and poses, in ``data.box_frame``;
    vqkit.models.patch_points). Needs ``data.load_depth: true``; views without depth or poses add nothing."""

    def __post_init__(self):
        check(self.num_latents >= 1, "model.projector.num_latents must be >= 1")
        check(self.max_grid >= 1, "model.projector.max_grid must be >= 1")
        check(self.num_layers >= 1, "model.projector.num_layers must be >= 1")
        check(self.merge_size >= 1, "model.projector.merge_size must be >= 1")
        check(not self.point_embed or self.type == "patch_merger",
              "model.projector.point_embed needs model.projector.type: patch_merger")


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
        check(self.depth_bins >= 1, "model.geometry.depth_bins must be >= 1")
        check(self.median_depth_m > 0, "model.geometry.median_depth_m must be > 0 (metres)")


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
    number_embeddings: Literal["learned", "fourier"] = "learned"
    """How a from_config LLM's whole-number tokens start: learned (random, as every token) or fourier
    (plus a fixed projection of sines and cosines of their value, so neighbouring numbers start close:
    :mod:`vqkit.models.number_embeddings`). A pretrained LLM keeps its own."""
    liger_kernels: bool = False
    """Liger's Triton kernels for the LLM (RMSNorm, SwiGLU, RoPE, and the fused linear cross-entropy at
    the answer positions, which never materialises the logits). Needs CUDA and the liger-kernel package
    (`pip install 'vqkit[gpu]'`); set on a CPU run or without the package it is an error, not a fallback."""

    @property
    def architecture_from_overrides(self) -> bool:
        """True when config_overrides alone define the architecture (from_config with model_type):
        name_or_path is then only where the tokenizer may come from."""
        return self.from_config and "model_type" in self.config_overrides

    def __post_init__(self):
        check(self.number_embeddings == "learned" or self.from_config,
              "model.llm.number_embeddings: fourier starts the number tokens of an LLM built from its config "
              "(from_config: true); a pretrained LLM keeps its own")


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
        check(self.r >= 1, "model.lora.r must be >= 1")
        check(not (self.enabled and self.full_finetune),
              "model.lora: choose either enabled (adapters) or full_finetune, not both")


@dataclass
class ModelConfig:
    """The whole VQModel: encoder -> projector -> [geometry tokens] -> LLM (+ LoRA)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
