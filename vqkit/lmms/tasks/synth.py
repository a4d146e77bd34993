"""The lmms-eval task class of vqkit's tasks: a ``ConfigurableTask`` whose documents come from a ``vqkit
synth`` folder on this machine (no download): ``dataset_kwargs.docs`` in the YAML names the builder,
``synth`` (the split's questions) or ``spatial`` (VSI-Bench-style questions about the split's rooms)."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
from datasets import Dataset, DatasetDict
from datasets.table import InMemoryTable
from lmms_eval.api.task import ConfigurableTask

from vqkit.errors import ConfigError
from vqkit.lmms.synth_docs import spatial_docs, synth_dir, synth_docs

BUILDERS = {"synth": synth_docs, "spatial": spatial_docs}


class SynthTask(ConfigurableTask):
    """A task over the synthetic folder (``dataset_path``, or ``$VQKIT_SYNTH_DIR``)."""

    def __init__(self, *args, config: dict | None = None, **kwargs) -> None:
        config = dict(config or {})
        config.pop("class", None)  # lmms-eval passes the YAML with the class that built it
        super().__init__(*args, config=config, **kwargs)

    def download(self, dataset_kwargs: dict | None = None) -> None:
        kind = (dataset_kwargs or {}).get("docs")
        if kind not in BUILDERS:
            raise ConfigError(f"task {self.config.task}: dataset_kwargs.docs must be one of {sorted(BUILDERS)}, "
                              f"got {kind!r}")
        split = self.config.test_split
        docs = BUILDERS[kind](synth_dir(self.config.dataset_path), split)
        self.dataset = DatasetDict({split: documents_dataset(docs)})
        self.dataset_no_image = self.dataset


def documents_dataset(docs: list[dict]) -> Dataset:
    """The documents as a ``datasets.Dataset``, fingerprinted by a hash of their JSON: ``datasets`` would
    otherwise pickle the whole table to fingerprint it, which some ``datasets`` / ``pyarrow`` pairs cannot."""
    fingerprint = hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()[:16]
    return Dataset(InMemoryTable(pa.Table.from_pylist(docs)), fingerprint=fingerprint)
