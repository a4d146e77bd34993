"""VGGT, vqkit's own implementation: the aggregator (the frozen geometry encoder) and the camera,
depth and point heads, with the official weights' keys and shapes, and loading the official checkpoints.

- :mod:`~vqkit.vggt.aggregator`: :class:`Aggregator` (alternating frame / global attention).
- :mod:`~vqkit.vggt.camera_head`, :mod:`~vqkit.vggt.dpt_head`: :class:`CameraHead`
  (pose encoding per view) and :class:`DPTHead` (depth, point map).
- :mod:`~vqkit.vggt.model`: :class:`VGGT`, the aggregator with its heads.
- :mod:`~vqkit.vggt.pose_encoding`: pose encoding <-> extrinsics / intrinsics.
- :mod:`~vqkit.vggt.predicted_geometry`: the heads' predictions -> a record's camera geometry.
- :mod:`~vqkit.vggt.weights`: official checkpoint files -> the aggregator or the whole model, strictly.
- :mod:`~vqkit.vggt.fingerprint`: what identifies an encoder's weights (the feature cache's key).
"""

from vqkit.vggt.aggregator import (
    Aggregator,
    FeatureShape,
    feature_shape,
    feature_shape_of,
)
from vqkit.vggt.camera_head import CameraHead
from vqkit.vggt.dpt_head import DPTHead
from vqkit.vggt.model import VGGT, VGGTOutput, default_dpt_layers
from vqkit.vggt.pose_encoding import (
    extri_intri_to_pose_encoding,
    pose_encoding_to_extri_intri,
)
from vqkit.vggt.predicted_geometry import (
    DEFAULT_MEDIAN_DEPTH_M,
    PredictedGeometry,
    geometry_from_predictions,
    median_depth_from_histograms,
)
from vqkit.vggt.weights import (
    WEIGHT_FILES,
    WeightsReport,
    load_aggregator_weights,
    load_vggt_weights,
    read_aggregator_state_dict,
    read_vggt_state_dict,
)

__all__ = [
    "DEFAULT_MEDIAN_DEPTH_M",
    "VGGT",
    "WEIGHT_FILES",
    "Aggregator",
    "CameraHead",
    "DPTHead",
    "FeatureShape",
    "PredictedGeometry",
    "VGGTOutput",
    "WeightsReport",
    "default_dpt_layers",
    "extri_intri_to_pose_encoding",
    "feature_shape",
    "feature_shape_of",
    "geometry_from_predictions",
    "load_aggregator_weights",
    "load_vggt_weights",
    "median_depth_from_histograms",
    "pose_encoding_to_extri_intri",
    "read_aggregator_state_dict",
    "read_vggt_state_dict",
]
