"""Packages whose names are imported on first use (PEP 562), so importing one light submodule (say
``vqkit.eval.metrics``) does not load torch or transformers through the package's ``__init__``."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a name to the module that defines it.
    ``__dir__`` lists the lazy names too, so ``help(package)`` and tab completion show them."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        module = importlib.import_module(package)
        return sorted({*vars(module), *exports})

    return __getattr__, __dir__
