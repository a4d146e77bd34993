"""The encoder weights a config names: there before a run starts, or a one-line refusal naming the command
that writes them.

A config that trains on a pretrained aggregator names its file (``model.encoder.weights``, e.g. the
demo's ``runs/demo_encoder/encoder/model.safetensors``), so the config is what it trains. When the file
is not there, training refuses before anything is written instead of failing mid-setup, and says which
``vqkit pretrain-encoder`` config writes it: ``RUN/encoder/model.safetensors`` comes from the
pretraining config (under ``configs/``) whose ``train.output_dir`` is RUN.

    check_encoder_weights(cfg)   # ConfigError: "model.encoder.weights runs/demo_encoder/encoder/model.safetensors
                                 #  does not exist: vqkit pretrain-encoder --config configs/demo_encoder.yaml writes it"
"""

from __future__ import annotations

from pathlib import Path

from vqkit.config.io import read_yaml_with_includes
from vqkit.errors import ConfigError, VQKitError
from vqkit.vggt.weights import is_hub_id

ENCODER_DIR = "encoder"
"""RUN/encoder/: the weights ``vqkit pretrain-encoder`` writes (model.safetensors), their config and step."""
WEIGHTS_FILE = "model.safetensors"


def pretraining_configs(run_dir: Path, configs_dir: str | Path = "configs") -> list[Path]:
    """The ``vqkit pretrain-encoder`` configs in ``configs_dir`` (an ``encoder_pretrain`` section) whose
    ``train.output_dir`` is ``run_dir``."""
    found = []
    for path in sorted(Path(configs_dir).glob("**/*.yaml")):
        try:
            data = read_yaml_with_includes(path)
        except (VQKitError, OSError):
            continue
        output_dir = (data.get("train") or {}).get("output_dir") if isinstance(data, dict) else None
        if "encoder_pretrain" in data and output_dir and Path(output_dir).resolve() == run_dir.resolve():
            found.append(path)
    return found


def weights_maker(weights: str | Path, configs_dir: str | Path = "configs") -> str:
    """What writes a missing weights file: the ``vqkit pretrain-encoder`` command for a
    ``RUN/encoder/model.safetensors`` (with the config under ``configs_dir`` that writes RUN, when there
    is one), else what the value should be."""
    path = Path(weights)
    if path.name == WEIGHTS_FILE and path.parent.name == ENCODER_DIR:
        run_dir = path.parent.parent
        configs = pretraining_configs(run_dir, configs_dir)
        if configs:
            return f"vqkit pretrain-encoder --config {configs[0]} writes it"
        return f"vqkit pretrain-encoder --config CONFIG --output-dir {run_dir} writes it"
    return ("give the aggregator's weights: a model.pt / model.safetensors file, a folder holding one, a hub id "
            "such as facebook/VGGT-1B, or RUN/encoder/model.safetensors of vqkit pretrain-encoder")


def check_encoder_weights(cfg, configs_dir: str | Path = "configs") -> None:
    """Refuse, in one line naming the command that writes them, a ``model.encoder.weights`` that is a
    local path not there (None, a random aggregator, and hub ids pass)."""
    weights = cfg.model.encoder.weights
    if not weights or is_hub_id(weights) or Path(weights).expanduser().exists():
        return
    raise ConfigError(f"model.encoder.weights {weights} does not exist: {weights_maker(weights, configs_dir)}")


__all__ = ["ENCODER_DIR", "WEIGHTS_FILE", "check_encoder_weights", "pretraining_configs", "weights_maker"]
