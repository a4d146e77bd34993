"""Typed configuration: one experiment = one YAML file over these defaults, plus ``--set a.b=c``.

- :mod:`vqkit.config.schema`: ``Config``, assembled from the sections in :mod:`~vqkit.config.model`,
  :mod:`~vqkit.config.data`, :mod:`~vqkit.config.train` and :mod:`~vqkit.config.eval` (one dataclass
  per section, one docstring per field).
- :mod:`vqkit.config.io`: ``load_config``, ``save_config``, overrides.

Both are re-exported here: ``from vqkit.config import Config, load_config``.
"""

from vqkit.config.io import apply_overrides, config_from_dict, load_config, save_config, to_dict
from vqkit.config.schema import (
    Config,
    DataConfig,
    EncoderConfig,
    EncoderPretrainConfig,
    EvalConfig,
    GeometryConfig,
    LLMConfig,
    LoRAConfig,
    ModelConfig,
    ProjectorConfig,
    SourceConfig,
    TrainConfig,
)

__all__ = ["Config", "DataConfig", "EncoderConfig", "EncoderPretrainConfig", "EvalConfig", "GeometryConfig",
           "LLMConfig", "LoRAConfig", "ModelConfig", "ProjectorConfig", "SourceConfig", "TrainConfig",
           "apply_overrides", "config_from_dict", "load_config", "save_config", "to_dict"]
