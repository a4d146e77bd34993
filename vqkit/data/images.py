"""Image and depth loading with VGGT's preprocessing, keeping K in step with every resize and crop.

Two modes (``data.resize_mode``), as in VGGT's ``load_and_preprocess_images``:

- ``crop`` (VGGT's default): resize the width to ``image_size`` keeping the aspect ratio (height
  rounded to a multiple of 14), then centre-crop the height to ``image_size`` when it is larger.
  A landscape 4:3 image at 448 becomes 448 x 336 (W x H); a portrait one 448 x 448.
- ``pad``: resize the longer side to ``image_size`` (the other rounded to a multiple of 14), then pad
  to a square ``image_size`` x ``image_size`` with white (1.0).

RGBA images are composited on white first (as VGGT does). ``K`` follows: a resize scales row 0 by
new_w / old_w and row 1 by new_h / old_h; a crop at (x0, y0) moves the principal point; a pad is a
crop at a negative offset (``vqkit.cameras``). Depth maps (16-bit PNG, millimetres, 0 =
invalid) get the same geometry with nearest-neighbour resampling (depths are never blended) and
zeros (= invalid) in the padding; semantic maps (8-bit PNG, class index) likewise, with
:data:`UNLABELLED` in the padding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vqkit.cameras import crop_intrinsics, depth_png_to_metres, resize_intrinsics
from vqkit.data.video import decode_frames, parse_frame_ref
from vqkit.errors import DataError
from vqkit.vggt.semantic_head import UNLABELLED

PATCH = 14


@dataclass(frozen=True)
class ResizePlan:
    """How one image of size (w, h) becomes the model's input: resize to ``resized`` (w, h), then
    take the window at ``offset`` (x0, y0) of size ``out`` (w, h); a negative offset pads."""

    src: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    out: tuple[int, int]

    def intrinsics(self, K: np.ndarray) -> np.ndarray:
        """K [3, 3] of the source image -> K of the output image."""
        return crop_intrinsics(resize_intrinsics(K, self.src, self.resized), *self.offset)


def _round14(x: float) -> int:
    return max(PATCH, int(round(x / PATCH)) * PATCH)


def plan_resize(width: int, height: int, image_size: int, mode: str) -> ResizePlan:
    """The resize/crop/pad of an image of (width, height) for ``image_size`` in ``mode``."""
    if image_size % PATCH:
        raise DataError(f"image_size must be a multiple of {PATCH}, got {image_size}")
    if mode == "crop":
        new_w = image_size
        new_h = _round14(height * new_w / width)
        out_h = min(new_h, image_size)
        return ResizePlan((width, height), (new_w, new_h), (0, (new_h - out_h) // 2), (new_w, out_h))
    if mode == "pad":
        if width >= height:
            new_w, new_h = image_size, _round14(height * image_size / width)
        else:
            new_w, new_h = _round14(width * image_size / height), image_size
        new_w, new_h = min(new_w, image_size), min(new_h, image_size)
        # VGGT pads top/left with the floor of half the gap; the offset is negative (a pad).
        x0 = -((image_size - new_w) // 2)
        y0 = -((image_size - new_h) // 2)
        return ResizePlan((width, height), (new_w, new_h), (x0, y0), (image_size, image_size))
    raise DataError(f"resize_mode must be 'crop' or 'pad', got {mode!r}")


def _window(arr: torch.Tensor, plan: ResizePlan, fill: float) -> torch.Tensor:
    """Crop or pad the last two dims of ``arr`` (resized) to ``plan.out`` at ``plan.offset``."""
    (x0, y0), (ow, oh) = plan.offset, plan.out
    rw, rh = plan.resized
    if x0 >= 0 and y0 >= 0 and x0 + ow <= rw and y0 + oh <= rh:
        return arr[..., y0:y0 + oh, x0:x0 + ow]
    out = arr.new_full((*arr.shape[:-2], oh, ow), fill)
    # Overlap of the source window [x0, x0 + ow) with the resized image [0, rw).
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + ow, rw), min(y0 + oh, rh)
    out[..., sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = arr[..., sy0:sy1, sx0:sx1]
    return out


def _open(path: str, what: str) -> Image.Image:
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, Image.DecompressionBombError, ValueError) as e:
        raise DataError(f"{path}: cannot read the {what} ({e})") from None
    return img


@functools.lru_cache(maxsize=1 << 16)
def image_file_size(path: str) -> tuple[int, int]:
    """(width, height) of a view file: an image's from its header (the pixels are not decoded), a video
    frame reference's from that frame (a video has no header per frame)."""
    if parse_frame_ref(path) is not None:
        return open_view(path).size
    with _open(path, "image") as img:
        return img.size


def load_image(path: str | Image.Image, image_size: int, mode: str = "crop") -> tuple[torch.Tensor, ResizePlan]:
    """Load an image as float32 [3, H, W] in [0, 1] with VGGT's preprocessing, plus its :class:`ResizePlan`
    (``plan.intrinsics(K)`` gives the K of the returned image). ``path`` may be an image already decoded
    (a PIL image, as evaluation harnesses hand them over).

    A file that cannot be decoded (truncated, not an image) raises DataError naming it. A video's
    frame reference (``clip.mp4#frame=12``, :mod:`vqkit.data.video`) decodes that frame.
    """
    return prepare_image(open_view(path), path, image_size, mode)


def open_view(path: str | Image.Image) -> Image.Image:
    """The PIL image of a view: an image file, a video's frame reference (decoded), or an image already
    decoded (a PIL image, as evaluation harnesses hand them over)."""
    if isinstance(path, Image.Image):
        return path
    parsed = parse_frame_ref(path)
    if parsed is not None:
        return decode_frames(parsed[0], [parsed[1]])[0]
    return _open(path, "image")


def prepare_image(img: Image.Image, path: str, image_size: int, mode: str = "crop") -> tuple[torch.Tensor, ResizePlan]:
    """:func:`load_image` of an opened image (``path`` names it in errors)."""
    try:
        src = img.size
        plan = plan_resize(src[0], src[1], image_size, mode)
        if img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that is still >= the target size:
            # several times faster for large photos (ScanNet's 1296x968 at 448 px decodes at 1/2).
            img.draft("RGB", plan.resized)
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img)
        img = img.convert("RGB")
        if img.size != plan.resized:
            # reducing_gap: a cheap box reduction first, then bicubic (VGGT's filter) for the rest.
            img = img.resize(plan.resized, Image.Resampling.BICUBIC, reducing_gap=3.0)
        (x0, y0), (ow, oh) = plan.offset, plan.out
        if x0 >= 0 and y0 >= 0 and (ow, oh) != img.size:
            img = img.crop((x0, y0, x0 + ow, y0 + oh))  # crop first: only kept pixels are copied
        arr = np.array(img)  # [h, w, 3] uint8, writable (np.asarray of a PIL image is read-only)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the image ({e})") from None
    # One pass from HWC uint8 to contiguous CHW float (a permute then .float() would keep the
    # channels-last strides and need a second copy), then scale in place.
    tensor = torch.from_numpy(arr).permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format)
    tensor.div_(255.0)
    if tensor.shape[-2:] != (plan.out[1], plan.out[0]):
        tensor = _window(tensor, plan, 1.0)  # pad mode: white border
    return tensor, plan


def _in_field(field: str | None, load, *args):
    """``load(*args)``, with a DataError prefixed by the record field it came from (``images[2]``)."""
    try:
        return load(*args)
    except DataError as e:
        if field is None:
            raise
        raise DataError(f"field '{field}': {e}") from None


def load_depth(path: str, plan: ResizePlan, field: str | None = None) -> torch.Tensor:
    """Load a 16-bit PNG depth map (millimetres, 0 = invalid) as float32 metres [H, W], resampled
    (nearest) to the geometry of the image ``plan`` so depth pixel (i, j) lies under image pixel (i, j).
    The depth map may have another resolution than the image (ScanNet: 640x480 vs 1296x968): both
    cover the same field of view, so it is resized to ``plan.resized`` directly. ``field``: the
    record field it comes from (``depths[2]``), named in errors."""
    return _in_field(field, _load_depth, path, plan)


def _load_depth(path: str, plan: ResizePlan) -> torch.Tensor:
    img = _open(path, "depth map")
    try:
        if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
            raise DataError(f"{path}: a depth map must be a 16-bit grayscale PNG in millimetres, got mode {img.mode}")
        if img.mode != "I":
            img = img.convert("I")
        if img.size != plan.resized:
            img = img.resize(plan.resized, Image.Resampling.NEAREST)
        depth_mm = np.array(img)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the depth map ({e})") from None
    depth = torch.from_numpy(depth_png_to_metres(depth_mm))
    return _window(depth, plan, 0.0).contiguous()


def load_semantics(path: str, plan: ResizePlan, field: str | None = None) -> torch.Tensor:
    """Load an 8-bit PNG semantic map (class index per pixel, :data:`UNLABELLED` = none) as int64
    [H, W], resampled (nearest, as :func:`load_depth`) to the geometry of the image ``plan``."""
    return _in_field(field, _load_semantics, path, plan)


def _load_semantics(path: str, plan: ResizePlan) -> torch.Tensor:
    img = _open(path, "semantic map")
    try:
        if img.mode not in ("L", "P"):
            raise DataError(f"{path}: a semantic map must be an 8-bit single-channel PNG of class indices, "
                            f"got mode {img.mode}")
        if img.size != plan.resized:
            img = img.resize(plan.resized, Image.Resampling.NEAREST)
        classes = np.array(img, dtype=np.int64)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the semantic map ({e})") from None
    return _window(torch.from_numpy(classes), plan, UNLABELLED).contiguous()


def pad_to_common(arrays: list[torch.Tensor], fill: float = 1.0,
                   shifts: np.ndarray | None = None) -> tuple[list[torch.Tensor], np.ndarray]:
    """Centre-pad tensors [..., h, w] to the largest (H, W) with ``fill`` (VGGT pads with white).
    Returns the padded tensors and each one's (dx, dy) shift of the principal point [N, 2]."""
    H = max(a.shape[-2] for a in arrays)
    W = max(a.shape[-1] for a in arrays)
    out, shift = [], np.zeros((len(arrays), 2))
    for i, a in enumerate(arrays):
        h, w = a.shape[-2:]
        if shifts is not None:
            dx, dy = int(shifts[i, 0]), int(shifts[i, 1])
        else:
            dx, dy = (W - w) // 2, (H - h) // 2
        shift[i] = dx, dy
        if (h, w) == (H, W):
            out.append(a)
            continue
        p = a.new_full((*a.shape[:-2], H, W), fill)
        p[..., dy:dy + h, dx:dx + w] = a
        out.append(p)
    return out, shift


def _video_frames(paths: list[str], fields: list[str] | None) -> dict[int, Image.Image]:
    """The decoded frames of the paths that are video frame references, by position: each video is
    decoded once for all of its frames."""
    by_video: dict[str, list[tuple[int, int]]] = {}
    for k, path in enumerate(paths):
        parsed = parse_frame_ref(path) if isinstance(path, str) else None  # a decoded image is none
        if parsed is not None:
            by_video.setdefault(parsed[0], []).append((k, parsed[1]))
    out = {}
    for video, wanted in by_video.items():
        field = fields[wanted[0][0]] if fields else None
        decoded = _in_field(field, decode_frames, video, [i for _, i in wanted])
        out.update({k: image for (k, _), image in zip(wanted, decoded, strict=True)})
    return out


def load_views(paths: list[str], image_size: int, mode: str = "crop",
               fields: list[str] | None = None) -> tuple[list[torch.Tensor], list[ResizePlan], np.ndarray]:
    """A record's views as the model sees them: each loaded with :func:`load_image`, then padded to
    their common size (views of one record may differ in size, since crop mode keeps the aspect
    ratio), as the collator pads across records. Returns (images [3, H, W] each, resize plans, each
    view's (dx, dy) padding shift [V, 2], which moves its principal point). ``fields``: the record
    field of each path (``images[2]``), named in the error of a file that cannot be read."""
    images, plans = [], []
    frames = _video_frames(paths, fields)
    for k, path in enumerate(paths):
        field = fields[k] if fields else None
        if k in frames:
            image, plan = _in_field(field, prepare_image, frames[k], path, image_size, mode)
        else:
            image, plan = _in_field(field, load_image, path, image_size, mode)
        images.append(image)
        plans.append(plan)
    images, shifts = pad_to_common(images)
    return images, plans, shifts
