"""The synthetic posed-room benchmark (the embedded default dataset).

- :mod:`~vqkit.synth.catalogue`: palettes, object categories, their sizes and shapes.
- :mod:`~vqkit.synth.rooms`: floor plans, doors and windows, furniture, cameras.
- :mod:`~vqkit.synth.render`: meshes and ray-cast RGB-D (open3d, CPU).
- :mod:`~vqkit.synth.scene`: one scene sampled, rendered and described.
- :mod:`~vqkit.synth.questions`: question-answer pairs from a scene's layout.
- :mod:`~vqkit.synth.benchmark`: the whole dataset on disk (``vqkit synth``).
"""

from vqkit.synth.benchmark import GENERATOR_VERSION, ensure_synth, generate, use_synthetic_data
from vqkit.synth.scene import make_scene, room_from_layout

__all__ = ["GENERATOR_VERSION", "ensure_synth", "generate", "make_scene", "room_from_layout", "use_synthetic_data"]
