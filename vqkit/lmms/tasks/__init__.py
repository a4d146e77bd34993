"""vqkit's lmms-eval tasks: ``vqkit_synth_val.yaml`` and ``vqkit_spatial.yaml`` (this folder is lmms-eval's
``--include_path``); their documents, prompts and scores are :mod:`vqkit.lmms.synth_docs`, their loader
:class:`vqkit.lmms.tasks.synth.SynthTask`."""
