"""The one builder: a :class:`~vqkit.models.vqmodel.VQModel` from the typed config, and a saved model
folder back into one.

:func:`build_model` constructs the parts (frozen VGGT aggregator, projector: Perceiver resampler or
patch merger, geometry encoder, LLM with LoRA), each under its own seed, and hands them to
:class:`VQModel`, which owns the freeze.
:func:`load_model` rebuilds the frozen parts from a saved folder's config and loads its trained weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn

from vqkit.config.io import apply_overrides, config_from_dict, load_config, to_dict
from vqkit.config.schema import Config
from vqkit.errors import CheckpointError, ConfigError
from vqkit.models.geometry_tokens import GeometryEncoder
from vqkit.models.llm import apply_lora, build_llm, resolve_dtype
from vqkit.models.number_embeddings import init_number_embeddings
from vqkit.models.patch_merger import PatchMerger
from vqkit.models.projector import PerceiverResampler
from vqkit.models.vqmodel import CONFIG_FILE, TOKENIZER_DIR, TRAINABLE_FILE, VQModel
from vqkit.tokenizer import load_tokenizer
from vqkit.utils.runtime import resolve_device, seeded
from vqkit.vggt.aggregator import Aggregator
from vqkit.vggt.predictor import GeometryPredictor

logger = logging.getLogger(__name__)


def build_encoder(enc_cfg, device: str | torch.device | None = None) -> nn.Module:
    """The frozen VGGT aggregator (``Aggregator.from_config``): official weights when
    ``encoder.weights`` is set, else a random init seeded by ``encoder.seed``. On the meta device
    only the architecture is built and no weights are read.

    For a GPU (``device``, or None where CUDA is available: training builds on the CPU and moves the
    model after) its matmul weights are stored in bf16 (:meth:`Aggregator.store_matmul_weights`): it
    runs under bf16 autocast there, which would otherwise copy every fp32 weight at every step.
    ``encoder.compile`` compiles its blocks."""
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            encoder = Aggregator(**Aggregator.config_kwargs(enc_cfg))
        encoder.default_layers = list(enc_cfg.layers)
        return encoder.freeze()
    encoder = Aggregator.from_config(enc_cfg, device=device).freeze()
    if encoder_matmul_dtype(device) == torch.bfloat16:
        encoder.store_matmul_weights(torch.bfloat16)
    if enc_cfg.compile:
        encoder.compile_blocks()
    return encoder


def encoder_matmul_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The dtype the frozen encoder's matmul weights are stored in for ``device`` (None = where training
    will run): bf16 on a GPU that has it, else fp32."""
    target = resolve_device(device)
    bf16 = target.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16 else torch.float32


def build_geometry_predictor(cfg: Config, device: str | torch.device | None = None) -> GeometryPredictor | None:
    """VGGT's camera and depth heads from ``model.encoder.weights`` when ``model.geometry.source`` is
    heads or auto (None for records). A weights file without them is an error that says what to use;
    with ``data.feature_cache`` the heads' aggregator layers must be among ``model.encoder.layers``
    (the cache stores only those)."""
    mcfg = cfg.model
    if mcfg.geometry.source == "records":
        return None
    predictor = GeometryPredictor.from_encoder_config(mcfg.encoder, device=device)
    configured = {layer % mcfg.encoder.depth for layer in mcfg.encoder.layers}
    missing = sorted(set(predictor.layers) - configured)
    if cfg.data.feature_cache and missing:
        raise ConfigError(f"model.geometry.source {mcfg.geometry.source} predicts geometry from aggregator layers "
                          f"{predictor.layers}, but data.feature_cache stores only model.encoder.layers "
                          f"{sorted(configured)} (missing {missing}); train from images, or fill geom_token "
                          f"first with vqkit prep geometry and use source: records")
    return predictor


def build_model(cfg: Config, tokenizer=None, device: str | torch.device | None = None) -> VQModel:
    """Assemble a :class:`VQModel` from the config.

    Args:
        cfg: the experiment config (``cfg.model`` sizes the parts, ``cfg.train.seed`` seeds them).
        tokenizer: from ``vqkit.tokenizer.load_tokenizer(cfg.model.llm)``; loaded when None
            (except on the meta device, where only the architecture is built).
        device: where to build; ``"meta"`` builds the full-size architecture without memory or
            weights (for :meth:`VQModel.parameter_table` and memory plans). None = CPU.

    Random parts are reproducible: each is constructed under its own seed derived from
    ``train.seed`` (the encoder from ``encoder.seed``), so two processes build identical models.
    """
    mcfg = cfg.model
    if not mcfg.encoder.frozen:
        raise ConfigError("model.encoder.frozen: false is not supported; the aggregator is always frozen")
    is_meta = device is not None and torch.device(device).type == "meta"
    if tokenizer is None and not is_meta:
        tokenizer = load_tokenizer(mcfg.llm)
    vocab_size = len(tokenizer) if tokenizer is not None else None
    seed = cfg.train.seed
    meta_ctx = torch.device("meta") if is_meta else contextlib.nullcontext()

    encoder = build_encoder(mcfg.encoder, device)
    with seeded(seed + 2):
        llm = build_llm(mcfg.llm, vocab_size, device)
    if mcfg.llm.number_embeddings == "fourier" and not is_meta:
        changed = init_number_embeddings(llm, tokenizer, seed + 4)
        logger.info("model.llm.number_embeddings fourier: %d number tokens start from their value", changed)
    hidden = llm.get_input_embeddings().embedding_dim
    in_dim = 2 * mcfg.encoder.embed_dim * len(mcfg.encoder.layers)
    projector_class = PatchMerger if mcfg.projector.type == "patch_merger" else PerceiverResampler
    with seeded(seed), meta_ctx:
        projector = projector_class.from_config(mcfg.projector, in_dim, hidden,
                                                num_special_tokens=encoder.patch_start_idx)
    geometry = None
    if mcfg.geometry.enabled:
        with seeded(seed + 1), meta_ctx:
            geometry = GeometryEncoder.from_config(mcfg.geometry, hidden)
    predictor = build_geometry_predictor(cfg, device) if mcfg.geometry.enabled else None
    if device is not None and not is_meta:
        projector.to(device)
        if geometry is not None:
            geometry.to(device)
    with seeded(seed + 3):
        llm = apply_lora(llm, mcfg.lora)
    if mcfg.llm.gradient_checkpointing == "auto" and not is_meta:
        logger.warning("model.llm.gradient_checkpointing is 'auto' but no memory plan resolved it (vqkit train "
                       "and vqkit bench do; vqkit.tools.checkpointing.resolve_gradient_checkpointing(cfg) "
                       "in a notebook): checkpointing on, the memory-safe choice")
    if mcfg.llm.gradient_checkpointing and not is_meta:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        llm.enable_input_require_grads()
    model = VQModel(encoder, projector, geometry, llm, tokenizer, cfg, geometry_predictor=predictor)
    counts = model.parameter_counts()
    logger.info("VQModel parameters (LLM dtype %s):\n%s", resolve_dtype(mcfg.llm, device),
                model.parameter_table())
    logger.info("trainable parameters: %s", f"{sum(t for _, t in counts.values()):,}")
    return model


def load_model(folder: str | Path, device: str | torch.device | None = None,
               encoder_weights: str | None = None, geometry_source: str | None = None) -> VQModel:
    """Rebuild a model saved by :meth:`VQModel.save_pretrained` (also ``vqkit.load_model``).

    The frozen parts come from the saved config (encoder weights path or seed, the LLM's hub id or
    folder, or its config + seed), the tokenizer from ``folder/tokenizer``; the trained weights are
    then loaded strictly. ``encoder_weights`` overrides the saved encoder weights path (the run
    may have used a path that does not exist on this machine); ``geometry_source`` the saved
    ``model.geometry.source`` (e.g. "heads" to evaluate a model on predicted geometry: the VGGT heads
    of the encoder weights are then loaded too).
    """
    from safetensors.torch import load_file

    folder = check_model_folder(folder)
    cfg = load_model_config(folder)
    if encoder_weights is not None:
        cfg.model.encoder.weights = str(encoder_weights)
    if geometry_source is not None:
        cfg.model.geometry.source = geometry_source
    tokenizer = load_tokenizer(dataclasses.replace(cfg.model.llm, tokenizer=str(folder / TOKENIZER_DIR)))
    model = build_model(cfg, tokenizer=tokenizer, device=device)
    try:
        state = load_file(str(folder / TRAINABLE_FILE))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise CheckpointError(f"{folder / TRAINABLE_FILE}: cannot read ({e})") from e
    model.load_trainable(state, source=str(folder / TRAINABLE_FILE))
    return model




def check_model_folder(folder: str | Path) -> Path:
    """``folder`` when it is a saved model (config.yaml, trainable.safetensors, tokenizer/); otherwise the
    one-line CheckpointError every command gives: not found, a run folder (naming its RUN/final), or
    which file is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    missing = [name for name in (CONFIG_FILE, TRAINABLE_FILE, TOKENIZER_DIR) if not (folder / name).exists()]
    if not missing:
        return folder
    final = folder / "final"
    if (final / CONFIG_FILE).is_file() and (final / TRAINABLE_FILE).is_file():
        raise CheckpointError(f"{folder} is a run folder, not a model: its trained model is {final} "
                              f"(--model {final})")
    raise CheckpointError(f"{folder} is not a vqkit model folder: {missing[0]} is missing "
                          f"(expected {CONFIG_FILE}, {TRAINABLE_FILE}, {TOKENIZER_DIR}/)")


def load_model_config(folder: str | Path, overrides: list[str] | None = None) -> Config:
    """The resolved config saved in a model folder (checked by :func:`check_model_folder`), with ``a.b=c``
    overrides applied (what a command uses with a saved model: ``vqkit eval --set eval.do_sample=true``)."""
    folder = check_model_folder(folder)
    cfg = load_config(folder / CONFIG_FILE)
    return config_from_dict(apply_overrides(to_dict(cfg), overrides)) if overrides else cfg


__all__ = ["build_encoder", "build_geometry_predictor", "build_model", "check_model_folder", "encoder_matmul_dtype",
           "load_model", "load_model_config"]
