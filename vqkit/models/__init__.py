"""Model parts: the VGGT aggregator (``vggt``), the Perceiver resampler (``projector``), geometry tokens
(``geometry``), the LLM + LoRA (``llm``) and their assembly (``vlm``: ``VQModel``, ``build_model``,
``load_model``).

Names are imported lazily so that ``import vqkit.models.vggt`` does not pull in transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PerceiverResampler": "vqkit.models.projector",
    "GeometryEncoder": "vqkit.models.geometry",
    "VQModel": "vqkit.models.vlm",
    "build_model": "vqkit.models.vlm",
    "load_model": "vqkit.models.vlm",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vqkit.models' has no attribute {name!r}")


__all__ = list(_EXPORTS)
