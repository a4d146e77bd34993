"""vqkit inside lmms-eval: a saved vqkit model as an lmms-eval model, and vqkit's own tasks.

lmms-eval finds both through its plugin mechanism: ``LMMS_EVAL_PLUGINS=vqkit.lmms`` makes it import
``vqkit.lmms.models`` (whose ``AVAILABLE_MODELS`` names the model ``vqkit``, :mod:`vqkit.lmms.models.vqkit`)
and look for tasks in ``vqkit/lmms/tasks/`` (pass that folder as ``--include_path`` too: lmms-eval 0.7.3
reads the task folders before it adds the plugin's)::

    LMMS_EVAL_PLUGINS=vqkit.lmms python -m lmms_eval --model vqkit --model_args pretrained=runs/demo/final \\
        --tasks vqkit_synth_val,vqkit_spatial --include_path vqkit/lmms/tasks --batch_size 64

The tasks (``vqkit_synth_val``, ``vqkit_spatial``) read a ``vqkit synth`` folder
(:mod:`vqkit.lmms.synth_docs`); docs/lmms_eval.md says how to score a model on VSI-Bench and lmms-eval's
other tasks, and what each score means. lmms-eval is an optional dependency (``pip install 'vqkit[lmms]'``);
nothing else in vqkit imports this package.
"""
