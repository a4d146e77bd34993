"""Plots and widgets for the notebooks, usable from scripts and tests.

Everything draws from the kit's own data structures, so a notebook cell is one call:

- :mod:`~vqkit.viz.scene`: :func:`load_scene` -> :class:`SceneView` (views, depth maps, cameras and layout
  of one scene, from a record, a synthetic scene folder or a record file), frusta, the fused point cloud.
- :mod:`~vqkit.viz.poses`: :func:`pose_figure`, the **3D pose figure** (camera frusta, the point cloud
  fused from the depth maps, the room's layout); ``backend="plotly"`` is interactive, ``"matplotlib"`` the
  static fallback for headless runs and PNG export (a scene without poses: :func:`no_poses_message`);
  :func:`open3d_geometries`; :func:`views_grid`.
- :mod:`~vqkit.viz.tables`: :func:`records_table`, :func:`qtype_stats_figure`, :func:`parameter_table`,
  :func:`token_budget`, :func:`tensor_shapes`.
- :mod:`~vqkit.viz.runs`: :func:`plot_training_curves`, :func:`metrics_table`, :func:`plot_qtype_bars`,
  :func:`run_to_evaluate`.
- :mod:`~vqkit.viz.layouts`: :func:`plot_layout_topdown` (gold solid, prediction dashed).
- :mod:`~vqkit.viz.answer_viewer`: :class:`AnswerViewer`, the ipywidgets browser over ``predictions.jsonl``.
- :mod:`~vqkit.viz.heads`: :func:`predict_room` (VGGT's camera and depth heads on one room),
  :func:`plot_predicted_cameras` (true vs predicted frusta), :func:`plot_predicted_depth`.

Heavy imports (matplotlib, plotly, open3d, ipywidgets) happen inside the functions that need them.
"""

from vqkit.viz.answer_viewer import AnswerViewer, judge
from vqkit.viz.heads import RoomPrediction, plot_predicted_cameras, plot_predicted_depth, predict_room
from vqkit.viz.layouts import plot_layout_topdown
from vqkit.viz.poses import no_poses_message, open3d_geometries, pose_figure, views_grid
from vqkit.viz.runs import metrics_table, plot_qtype_bars, plot_training_curves, run_to_evaluate
from vqkit.viz.scene import SceneView, frusta, fused_point_cloud, layout_segments, load_scene, load_scene_dir
from vqkit.viz.tables import (
                              HTMLTable,
                              parameter_table,
                              qtype_stats,
                              qtype_stats_figure,
                              qtype_stats_table,
                              records_table,
                              tensor_shapes,
                              token_budget,
)

__all__ = ["AnswerViewer", "HTMLTable", "RoomPrediction", "SceneView", "frusta", "fused_point_cloud", "judge",
           "layout_segments", "load_scene", "load_scene_dir", "metrics_table", "no_poses_message", "open3d_geometries",
           "parameter_table", "plot_layout_topdown", "plot_predicted_cameras", "plot_predicted_depth",
           "plot_qtype_bars", "plot_training_curves", "pose_figure", "predict_room", "qtype_stats",
           "qtype_stats_figure", "qtype_stats_table", "records_table", "run_to_evaluate", "tensor_shapes",
           "token_budget", "views_grid"]
