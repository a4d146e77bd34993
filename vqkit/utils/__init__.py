"""Small helpers every layer may use: files written atomically and JSON lines (``files``), the process
group (``distributed``), seeds, devices and precision (``runtime``), and importing open3d (``open3d``).

Nothing here imports another vqkit module except :mod:`vqkit.errors`.
"""
