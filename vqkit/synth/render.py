"""Meshes and ray-cast rendering of the synthetic rooms (CPU, no display).

A scene is one triangle soup (:class:`SceneMesh`) with a label and an albedo per triangle, so one
``open3d.t.geometry.RaycastingScene`` call renders every view of a room: the hit triangle gives the
surface (label), its colour and its normal; shading is Lambert with one directional light plus a
weak headlight, and the floor gets a light tile texture so that its perspective is visible.

Rays are built from K directly: pixel (i, j) is sampled at its centre (u, v) = (j + 0.5, i + 0.5)
with direction ``R^T K^-1 [u, v, 1]``, so the returned hit distance *is* the camera-frame z (the
depth convention of :func:`vqkit.cameras.backproject_depth`) and no image flip is needed
(open3d's ``create_rays_pinhole`` gives upside-down images and ray lengths instead).

Labels per pixel: object index i >= 0, :data:`FLOOR`, :data:`CEILING`, :data:`WALL`,
``DOOR_BASE + k`` for door k, ``WINDOW_BASE + k`` for window k, :data:`MISS` where nothing was hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vqkit.utils.open3d import import_open3d

FLOOR, CEILING, WALL = 1000, 1001, 1002
DOOR_BASE, WINDOW_BASE = 2000, 3000
MISS = -1
# RGB is ray cast at this multiple of the image size and box-filtered down (antialiasing); 1 = off.
RENDER_SCALE = 2

# One box = 8 corners (bit 0: x, bit 1: y, bit 2: z) and 12 triangles.
_BOX_TRIS = np.array([
    [0, 2, 1], [1, 2, 3],  # z0
    [4, 5, 6], [5, 7, 6],  # z1
    [0, 1, 4], [1, 5, 4],  # y0
    [2, 6, 3], [3, 6, 7],  # y1
    [0, 4, 2], [2, 4, 6],  # x0
    [1, 3, 5], [3, 7, 5],  # x1
], dtype=np.int64)


@dataclass
class SceneMesh:
    """A growing triangle soup: vertices [N, 3], triangles [T, 3], per-triangle label [T] and
    albedo [T, 3] (linear RGB in [0, 1]), and ``textured`` [T] (floor tiles)."""

    vertices: list = field(default_factory=list)
    triangles: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    albedo: list = field(default_factory=list)
    textured: list = field(default_factory=list)
    _n: int = 0

    def add(self, verts: np.ndarray, tris: np.ndarray, label: int, colour, textured: bool = False) -> None:
        self.vertices.append(np.asarray(verts, dtype=np.float64))
        self.triangles.append(np.asarray(tris, dtype=np.int64) + self._n)
        self._n += len(verts)
        self.labels.append(np.full(len(tris), label, dtype=np.int32))
        self.albedo.append(np.tile(np.asarray(colour, dtype=np.float32), (len(tris), 1)))
        self.textured.append(np.full(len(tris), textured, dtype=bool))

    def add_box(self, lo, hi, label: int, colour, yaw: float = 0.0, origin=(0.0, 0.0, 0.0)) -> None:
        """An axis-aligned box [lo, hi] in a local frame rotated by ``yaw`` about +z, then moved to
        ``origin`` (world)."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        idx = np.arange(8)
        corners = np.stack([np.where(idx & 1, hi[0], lo[0]), np.where(idx & 2, hi[1], lo[1]),
                            np.where(idx & 4, hi[2], lo[2])], axis=1)
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        self.add(corners @ rot.T + np.asarray(origin, float), _BOX_TRIS, label, colour)

    def add_boxes(self, boxes: np.ndarray, label: int, colours: np.ndarray, yaw: float = 0.0,
                  origin=(0.0, 0.0, 0.0)) -> None:
        """Many boxes at once: ``boxes`` [n, 6] as (x0, x1, y0, y1, z0, z1) in the local frame,
        ``colours`` [n, 3]; same transform as :meth:`add_box`."""
        idx = np.arange(8)
        b = np.asarray(boxes, dtype=np.float64)
        corners = np.stack([np.where(idx & 1, b[:, 1:2], b[:, 0:1]), np.where(idx & 2, b[:, 3:4], b[:, 2:3]),
                            np.where(idx & 4, b[:, 5:6], b[:, 4:5])], axis=2)  # [n, 8, 3]
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        verts = corners.reshape(-1, 3) @ rot.T + np.asarray(origin, float)
        tris = (_BOX_TRIS[None] + 8 * np.arange(len(b))[:, None, None]).reshape(-1, 3)
        self.vertices.append(verts)
        self.triangles.append(tris + self._n)
        self._n += len(verts)
        self.labels.append(np.full(len(tris), label, dtype=np.int32))
        self.albedo.append(np.repeat(np.asarray(colours, dtype=np.float32), 12, axis=0))
        self.textured.append(np.zeros(len(tris), dtype=bool))

    def add_quad(self, corners: np.ndarray, label: int, colour, textured: bool = False) -> None:
        """A planar quad from 4 corners in order."""
        self.add(np.asarray(corners, float), np.array([[0, 1, 2], [0, 2, 3]]), label, colour, textured)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.vertices).astype(np.float32), np.concatenate(self.triangles).astype(np.uint32),
                np.concatenate(self.labels), np.concatenate(self.albedo), np.concatenate(self.textured))


def camera_rays(K: np.ndarray, R: np.ndarray, t: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rays float32 [H*W, 6] (origin, direction) through the pixel centres of a pinhole camera.

    Directions have camera-frame z = 1, so a hit distance equals the depth (camera z)."""
    Kinv = np.linalg.inv(K)
    u = (np.arange(width) + 0.5) * Kinv[0, 0] + Kinv[0, 2]
    v = (np.arange(height) + 0.5) * Kinv[1, 1] + Kinv[1, 2]
    rays = np.empty((height, width, 6), dtype=np.float32)
    rays[..., :3] = -np.asarray(R).T @ np.asarray(t)
    R = np.asarray(R, dtype=np.float64)
    # d_world = R^T [u, v, 1]: rows of R are the camera axes in world coordinates. One [H, W] plane per
    # component: broadcasting over a last axis of 3 ran ~3x slower for the same sums.
    for c in range(3):
        rays[..., 3 + c] = (u[None, :] * R[0, c] + v[:, None] * R[1, c]) + R[2, c]
    return rays.reshape(-1, 6)


def render(mesh: SceneMesh, K: np.ndarray, Rs: np.ndarray, ts: np.ndarray, size: int,
           render_scale: int = RENDER_SCALE, light_dir=(0.4, 0.25, 1.0), nthreads: int = 0
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render V square views of ``size`` px.

    Args:
        K: [3, 3] pixel intrinsics of the stored ``size`` x ``size`` image (zero skew).
        Rs, ts: [V, 3, 3], [V, 3] world-to-camera (OpenCV axes).
        render_scale: RGB is ray cast at ``size * render_scale`` and box-averaged down (antialiasing).
    Returns:
        rgb uint8 [V, size, size, 3]; depth float32 [V, size, size] in metres (camera z, 0 = no hit),
        sampled exactly at the stored pixel centres; labels int32 [V, size, size].

    Shading is flat per triangle and view (every surface is planar, so whether it faces the camera
    and its Lambert term are constant over it), which keeps the per-pixel work to a gather.
    """
    o3d = import_open3d()
    verts, tris, tri_label, tri_albedo, tri_tex = mesh.arrays()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts), o3d.core.Tensor(tris))
    V, S, big = len(Rs), size, size * render_scale
    K_big = np.array(K, dtype=np.float64)
    K_big[:2] *= render_scale
    rays = np.concatenate([camera_rays(K_big, Rs[v], ts[v], big, big) for v in range(V)]
                          + [camera_rays(K, Rs[v], ts[v], S, S) for v in range(V)])
    hit = scene.cast_rays(o3d.core.Tensor(rays), nthreads=nthreads)
    t_hit = hit["t_hit"].numpy()
    ok = np.isfinite(t_hit)
    prim = np.where(ok, hit["primitive_ids"].numpy().astype(np.int64), len(tris))  # len(tris) = miss

    # Per-triangle, per-view colour: albedo x (ambient + sun + headlight), black for a miss.
    v0 = verts[tris[:, 0]].astype(np.float64)
    n = np.cross(verts[tris[:, 1]] - v0, verts[tris[:, 2]] - v0).astype(np.float64)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    centroid = verts[tris].astype(np.float64).mean(axis=1)
    light = np.asarray(light_dir, float) / np.linalg.norm(light_dir)
    n_big = V * big * big
    colour = np.empty((V, big * big, 3), dtype=np.float32)
    for v in range(V):
        eye = -np.asarray(Rs[v]).T @ np.asarray(ts[v])
        to_eye = eye - centroid
        to_eye /= np.linalg.norm(to_eye, axis=1, keepdims=True) + 1e-12
        nv = np.where((np.sum(n * to_eye, axis=1) < 0)[:, None], -n, n)  # the side facing the camera
        shade = 0.42 + 0.40 * np.clip(nv @ light, 0, None) + 0.25 * np.clip(np.sum(nv * to_eye, axis=1), 0, None)
        table = np.zeros((len(tris) + 1, 3), dtype=np.float32)
        table[:-1] = tri_albedo * shade[:, None]
        colour[v] = table[prim[v * big * big:(v + 1) * big * big]]
    colour = colour.reshape(-1, 3)
    tex = np.flatnonzero(tri_tex[np.minimum(prim[:n_big], len(tris) - 1)] & ok[:n_big])
    if len(tex):  # floor tiles of 0.6 m: a perspective cue, worked out for the floor's pixels only
        r, th = rays[tex], t_hit[tex]
        checker = (np.floor((r[:, 0] + th * r[:, 3]) / 0.6) + np.floor((r[:, 1] + th * r[:, 4]) / 0.6)) % 2
        colour[tex[checker == 0]] *= np.float32(0.9)
    colour = colour.reshape(V, S, render_scale, S, render_scale, 3)
    pooled = np.zeros((V, S, S, 3), dtype=np.float32)
    for a in range(render_scale):  # box filter: sum of strided slices is much cheaper than mean()
        for b in range(render_scale):
            pooled += colour[:, :, a, :, b]
    colour = pooled / (render_scale * render_scale)
    rgb = (np.clip(colour, 0, 1) * 255.0 + 0.5).astype(np.uint8)

    # Depth and labels from the rays through the stored pixel centres.
    ok_s = ok[n_big:]
    depth = np.where(ok_s, t_hit[n_big:], 0.0).astype(np.float32).reshape(V, S, S)
    labels = np.append(tri_label, MISS)[prim[n_big:]].astype(np.int32).reshape(V, S, S)
    return rgb, depth, labels
