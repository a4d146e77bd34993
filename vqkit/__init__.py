"""vqkit: posed views of a room -> frozen VGGT aggregator -> Perceiver -> geometry tokens -> Qwen3 + LoRA.

The layers, lowest first (a module imports only from its own layer or below; ``docs/architecture.md``):
``utils``, ``config``, ``cameras``, ``tokenizer`` -> ``roomplan`` -> ``data``, ``synth``, ``prep`` ->
``models`` -> ``eval`` -> ``train`` -> ``viz``, ``tools`` -> ``commands``.
"""

from vqkit.version import __version__


def load_model(folder, **kwargs):
    """Rebuild a saved model folder (see :func:`vqkit.models.builder.load_model`)."""
    from vqkit.models.builder import load_model as _load_model

    return _load_model(folder, **kwargs)


__all__ = ["__version__", "load_model"]
