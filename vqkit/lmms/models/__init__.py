"""The models this plugin adds to lmms-eval: ``--model vqkit`` is :class:`vqkit.lmms.models.vqkit.VQKit`
(lmms-eval imports ``vqkit.lmms.models.<name>`` and takes the class named here)."""

AVAILABLE_MODELS = {"vqkit": "VQKit"}
