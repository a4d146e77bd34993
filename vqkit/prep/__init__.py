"""Converters from the official datasets to vqkit records (``vqkit prep scanqa|sqa3d|arkit``).

- :mod:`~vqkit.prep.scanqa`, :mod:`~vqkit.prep.sqa3d`: questions + ScanNet frames (:mod:`~vqkit.prep.scannet`).
- :mod:`~vqkit.prep.arkit`: ARKitScenes 3DOD scans -> Stage 2 RoomPlan records.
- :mod:`~vqkit.prep.common`: view selection, image writing, the resumable scene loop, summaries.

See ``docs/real_data.md`` for where to get the data, the commands and the output layout.
"""
