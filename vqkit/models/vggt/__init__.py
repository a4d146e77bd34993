"""VGGT, vqkit's own implementation: the aggregator (the frozen geometry encoder) with the official
weights' keys and shapes, and loading the official checkpoints.

- :mod:`~vqkit.models.vggt.aggregator`: :class:`Aggregator` (alternating frame / global attention).
- :mod:`~vqkit.models.vggt.weights`: official checkpoint files -> the aggregator, strictly.
- :mod:`~vqkit.models.vggt.fingerprint`: what identifies an encoder's weights (the feature cache's key).
"""

from vqkit.models.vggt.aggregator import Aggregator, FeatureShape, feature_shape, feature_shape_of
from vqkit.models.vggt.weights import WEIGHT_FILES, load_aggregator_weights, read_aggregator_state_dict

__all__ = ["Aggregator", "FeatureShape", "WEIGHT_FILES", "feature_shape", "feature_shape_of", "load_aggregator_weights",
           "read_aggregator_state_dict"]
