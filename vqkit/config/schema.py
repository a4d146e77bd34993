"""The typed defaults of an experiment: one dataclass per section, one docstring per field.

Every field has a docstring (the string literal under it) and ``__post_init__`` checks say how to fix
a bad value. The sections live by concern (:mod:`~vqkit.config.model`, :mod:`~vqkit.config.data`,
:mod:`~vqkit.config.train`, :mod:`~vqkit.config.eval`); this module assembles them into
:class:`Config` and re-exports every section class. Reading YAML and ``--set`` overrides into these
classes is :mod:`vqkit.config.io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vqkit.config.checks import check
from vqkit.config.data import DataConfig, SourceConfig
from vqkit.config.eval import EvalConfig
from vqkit.config.model import (
    EncoderConfig,
    GeometryConfig,
    LLMConfig,
    LoRAConfig,
    ModelConfig,
    ProjectorConfig,
)
from vqkit.config.train import EncoderPretrainConfig, TrainConfig

__all__ = ["Config", "DataConfig", "EncoderConfig", "EncoderPretrainConfig", "EvalConfig", "GeometryConfig",
           "LLMConfig", "LoRAConfig", "ModelConfig", "ProjectorConfig", "SourceConfig", "TrainConfig"]


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
        check(not self.model.projector.point_embed or self.data.load_depth,
              "model.projector.point_embed places patches in 3D from depth maps: set data.load_depth: true")
        check(self.data.turns == 1 or self.model.llm.attn_implementation in ("sdpa", "eager"),
              f"data.turns > 1 keeps the turns apart with a 4D attention mask, which "
              f"model.llm.attn_implementation={self.model.llm.attn_implementation!r} does not take; use sdpa or eager")
        attention = self.model.llm.attn_implementation
        check(not self.data.packing or attention == "sdpa" or attention.startswith("flash_attention"),
              f"data.packing keeps packed samples apart with SDPA per sample or flash-attention's varlen kernel; "
              f"model.llm.attn_implementation={attention!r} has neither: use sdpa (or flash_attention_2 on CUDA)")
        check(not self.data.packing or self.data.turns == 1 or attention == "sdpa",
              "data.packing with data.turns > 1 needs model.llm.attn_implementation sdpa (the turn mask)")
        check(self.train.tokens_per_batch is None or self.train.tokens_per_batch >= self.data.max_length,
              f"train.tokens_per_batch={self.train.tokens_per_batch} is less than data.max_length="
              f"{self.data.max_length}: the longest sample would not fit a batch; raise it to at least that")
