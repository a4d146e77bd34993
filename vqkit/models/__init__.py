"""The vision-question model's parts around the frozen encoder (:mod:`vqkit.vggt`), and their assembly.

- :mod:`~vqkit.models.projector`: the Perceiver resampler (aggregator tokens -> LLM tokens).
- :mod:`~vqkit.models.geometry_tokens`: one token per view from its camera and depth statistics.
- :mod:`~vqkit.models.llm`: the LLM through transformers, LoRA through peft.
- :mod:`~vqkit.models.vqmodel`: :class:`VQModel`, the vision-question model that fuses them.
- :mod:`~vqkit.models.builder`: :func:`build_model` / :func:`load_model`, the one builder.

Names are imported lazily so that importing one part does not pull in transformers.
"""

from __future__ import annotations

from vqkit.utils.lazy import lazy_exports

_EXPORTS = {
    "PerceiverResampler": "vqkit.models.projector",
    "GeometryEncoder": "vqkit.models.geometry_tokens",
    "VQModel": "vqkit.models.vqmodel",
    "build_model": "vqkit.models.builder",
    "load_model": "vqkit.models.builder",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
