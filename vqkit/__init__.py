"""vqkit: posed views of a room -> frozen VGGT aggregator -> Perceiver -> geometry tokens -> Qwen3 + LoRA."""

__version__ = "0.1.0"


def load_model(folder, **kwargs):
    """Rebuild a saved model folder (see :func:`vqkit.models.vlm.load_model`)."""
    from vqkit.models.vlm import load_model as _load_model

    return _load_model(folder, **kwargs)


__all__ = ["__version__", "load_model"]
